//! Reads from two threads at once, for the pool benches (`pool`,
//! `pool_scale`): a daemon's device and I/O threads reading volumes of one
//! pool, where a lookup that serialises them shows.

use std::hint::black_box;
use std::time::Instant;

/// A 4 KiB read of item `op` into the buffer.
pub type Read<'a> = &'a (dyn Fn(u64, &mut [u8]) + Sync);

/// Reads every op of `ops` with `a` and then with `b`, each time from two
/// threads at once (each half of the ops), over `passes` passes with the
/// side that runs first alternating (the side that runs second over the
/// same offsets is faster): the total seconds of `a`'s runs and of `b`'s.
pub fn two_threads(ops: &[u64], passes: usize, a: Read<'_>, b: Read<'_>) -> (f64, f64) {
    let run = |read: Read<'_>| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for k in 0..2 {
                s.spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    for &op in ops.iter().skip(k).step_by(2) {
                        read(op, &mut buf);
                        black_box(&buf);
                    }
                });
            }
        });
        t.elapsed().as_secs_f64()
    };
    let (mut ta, mut tb) = (0.0, 0.0);
    for pass in 0..passes {
        if pass % 2 == 0 {
            ta += run(a);
            tb += run(b);
        } else {
            tb += run(b);
            ta += run(a);
        }
    }
    (ta, tb)
}
