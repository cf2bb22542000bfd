//! Overwrites of chunks a volume already owns run in parallel (they share
//! the volume's gate like reads), while writes that allocate still read
//! back right next to them.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::util::narrow::{fit, LowByte};
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::io::DataIo;
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig};

const CHUNK: usize = 64 << 10;

/// A data file whose armed writes wait (up to a deadline, so a serialised
/// data path fails the test instead of hanging it) until `want` of them are
/// inside `write_at` at the same time.
struct Rendezvous {
    io: CrashIo,
    state: Mutex<(bool, usize, usize)>, // (armed, inside now, most inside at once)
    cv: Condvar,
    want: usize,
}

impl Rendezvous {
    fn arm(&self) {
        self.state.lock().unwrap().0 = true;
    }
    fn most_at_once(&self) -> usize {
        self.state.lock().unwrap().2
    }
}

/// The pool owns one handle, the test another.
struct Shared(Arc<Rendezvous>);

impl DataIo for Shared {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.0.io.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let rv = &self.0;
        let mut st = rv.state.lock().unwrap();
        if st.0 {
            st.1 += 1;
            st.2 = st.2.max(st.1);
            rv.cv.notify_all();
            let (mut st, _) = rv
                .cv
                .wait_timeout_while(st, Duration::from_secs(10), |s| s.2 < rv.want)
                .unwrap();
            st.1 -= 1;
        } else {
            drop(st);
        }
        self.0.io.write_at(buf, off)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.io.sync_data()
    }
    fn file_len(&self) -> u64 {
        self.0.io.file_len()
    }
    fn grow_to(&self, len: u64) -> io::Result<()> {
        self.0.io.grow_to(len)
    }
}

fn pool_with(data: Arc<Rendezvous>) -> Pool {
    let cfg = PoolConfig {
        chunk_size: fit(CHUNK),
        capacity_bytes: 16 << 20,
        low_water_pct: 90,
    };
    Pool::create_with(&cfg, Box::new(MemStore::new()), Box::new(Shared(data))).unwrap()
}

fn fill(byte: u8, len: usize) -> Vec<u8> {
    vec![byte; len]
}

#[test]
fn overwrites_of_owned_chunks_run_in_parallel() {
    let rv = Arc::new(Rendezvous {
        io: CrashIo::new(),
        state: Mutex::new((false, 0, 0)),
        cv: Condvar::new(),
        want: 2,
    });
    let pool = pool_with(Arc::clone(&rv));
    pool.create_volume("v", 1 << 20, 512).unwrap();
    let vol = pool.open_volume("v").unwrap();
    // Map chunks 0 and 2 (allocating writes), commit.
    vol.write(0, &fill(1, 4096), false).unwrap();
    vol.write((2 * CHUNK / 512) as u64, &fill(1, 4096), false)
        .unwrap();
    pool.flush().unwrap();
    rv.arm();
    let writers: Vec<_> = [0usize, 2]
        .into_iter()
        .map(|c| {
            let vol = Arc::clone(&vol);
            std::thread::spawn(move || {
                vol.write(
                    (c * CHUNK / 512 + 8) as u64,
                    &fill(c.low_byte() + 10, 4096),
                    false,
                )
                .unwrap()
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        rv.most_at_once(),
        2,
        "two overwrites of owned chunks never were in the data file at the same time"
    );
    let mut buf = vec![0u8; 4096];
    for c in [0usize, 2] {
        vol.read((c * CHUNK / 512 + 8) as u64, &mut buf).unwrap();
        assert_eq!(buf, fill(c.low_byte() + 10, 4096), "chunk {c}");
    }
}

#[test]
fn writes_over_owned_and_unmapped_chunks_read_back() {
    let rv = Arc::new(Rendezvous {
        io: CrashIo::new(),
        state: Mutex::new((false, 0, 0)),
        cv: Condvar::new(),
        want: 1,
    });
    let pool = pool_with(rv);
    pool.create_volume("v", 1 << 20, 512).unwrap();
    let vol = pool.open_volume("v").unwrap();
    let sectors = |bytes: usize| (bytes / 512) as u64;
    // Chunks 0..3 mapped whole; chunk 4 unmapped.
    vol.write(0, &fill(1, 3 * CHUNK), false).unwrap();
    // In place across chunk boundaries (0..3), then one reaching into chunk 4
    // (falls back to the planned path).
    vol.write(sectors(CHUNK / 2), &fill(2, 2 * CHUNK), false)
        .unwrap();
    vol.write(sectors(3 * CHUNK - 4096), &fill(3, 8192), false)
        .unwrap();
    let mut all = vec![0u8; 5 * CHUNK];
    vol.read(0, &mut all).unwrap();
    let mut want = fill(1, 3 * CHUNK);
    want.extend(fill(0, 2 * CHUNK));
    want[CHUNK / 2..CHUNK / 2 + 2 * CHUNK].fill(2);
    want[3 * CHUNK - 4096..3 * CHUNK + 4096].fill(3);
    assert!(all == want, "volume contents differ from the model");
    // A fresh pool view from the committed metadata sees the same.
    pool.flush().unwrap();
    assert!(pool.check().unwrap().problems.is_empty());
}
