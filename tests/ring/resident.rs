//! The command ring's pages behind `cmd_tail` leave the process's mapping:
//! after laps of the ring only the pages near the tail are mapped, and every
//! command still reads back whole.
//!
//! Counted from `/proc/self/pagemap` (the present bit of each page of the
//! ring's mapping), not from smaps' `Rss`: the simulator's region is a
//! memfd, and a fault on shmem also maps the cached pages around it (the
//! kernel's fault-around, 64 KiB), which a uio device's mapping does not
//! do; so pages near the fetch cursor come back here, and only those.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use crate::util::ring::fetch_cmds;
use tcmud_core::ring::{Completion, DataIn, Ring};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const RING: u32 = 1024 * 1024 - 128;
const PAGE: usize = 4096;

/// How many of the `pages` pages from `addr` this process has mapped.
fn present_pages(addr: usize, pages: usize) -> usize {
    let mut f = std::fs::File::open("/proc/self/pagemap").unwrap();
    f.seek(SeekFrom::Start((addr / PAGE * 8) as u64)).unwrap();
    let mut buf = vec![0u8; pages * 8];
    f.read_exact(&mut buf).unwrap();
    buf.chunks_exact(8)
        .filter(|e| e.last().is_some_and(|b| b & 0x80 != 0))
        .count()
}

#[test]
fn retired_command_ring_pages_are_not_kept_mapped() {
    let cfg = SimConfig {
        cmdr_size: RING,
        ..SimConfig::default()
    };
    let (mut sim, dev) = KernelSim::new(cfg).unwrap();
    let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    // the mailbox and the command ring: 256 pages
    let ring_pages = (128 + RING as usize) / PAGE;
    let (mut done, mut submitted, mut most) = (0u64, 0u64, 0usize);
    // about three laps of the ring in batches of 16 one-block READs
    while submitted < 3 * u64::from(RING) / 64 {
        let ids: Vec<u16> = (0..16)
            .map(|_| sim.submit(&READ10, SimDir::In(4096)).unwrap())
            .collect();
        submitted += 16;
        sim.kick().unwrap();
        ring.drain_events().unwrap();
        let fetched = fetch_cmds(&mut ring);
        assert_eq!(fetched.iter().map(|c| c.cmd_id).collect::<Vec<_>>(), ids);
        for c in &fetched {
            assert_eq!(c.cdb.as_bytes(), &READ10);
            assert_eq!(c.data.len(), 4096);
            let fill = [c.cmd_id.to_le_bytes()[0]; 4096];
            assert_eq!(ring.write_data_in(&c.data, &fill).unwrap(), 4096);
            ring.complete(Completion::good(c.cmd_id), DataIn::new(&c.data, 4096))
                .unwrap();
        }
        // after the completions: the released pages are gone until the
        // next fetch
        most = most.max(present_pages(ring.mapping_addr(), ring_pages));
        ring.kick().unwrap();
        assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
        for d in sim.process_completions().unwrap() {
            assert_eq!(d.status, 0);
            assert_eq!(d.data_in, vec![d.cmd_id.to_le_bytes()[0]; 4096]);
            done += 1;
        }
        assert_eq!(sim.broken(), None);
    }
    assert_eq!(done, submitted);
    // the mailbox's 64 KiB window (fault-around maps all of it here) and
    // the window the tail is in (the one before it too, while the fetch
    // crossed into the next): not the whole ring (256 pages, every one the
    // walk read)
    assert!(
        most <= 3 * 16,
        "{most} of the ring's {ring_pages} pages mapped at once"
    );
}

/// One round of `n` one-block WRITEs then READs of what they wrote, each
/// READ answered with the bytes its WRITE carried.
fn write_then_read(sim: &mut KernelSim, ring: &mut Ring, n: u8, seed: u8) {
    const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    for i in 0..n {
        sim.submit(&WRITE10, SimDir::Out(vec![seed ^ i; 4096]))
            .unwrap();
    }
    sim.kick().unwrap();
    ring.drain_events().unwrap();
    let writes = fetch_cmds(ring);
    let mut stored = Vec::new();
    for c in &writes {
        let mut b = vec![0u8; 4096];
        assert_eq!(ring.read_data_out(&c.data, &mut b).unwrap(), 4096);
        stored.push(b);
        ring.complete(Completion::good(c.cmd_id), DataIn::data_out(&c.data))
            .unwrap();
    }
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    assert!(sim
        .process_completions()
        .unwrap()
        .iter()
        .all(|d| d.status == 0));
    for (i, want) in stored.iter().enumerate() {
        assert_eq!(want, &vec![seed ^ u8::try_from(i).unwrap(); 4096]);
        sim.submit(&READ10, SimDir::In(4096)).unwrap();
    }
    sim.kick().unwrap();
    ring.drain_events().unwrap();
    let reads = fetch_cmds(ring);
    for (c, b) in reads.iter().zip(&stored) {
        assert_eq!(ring.write_data_in(&c.data, b).unwrap(), 4096);
        ring.complete(Completion::good(c.cmd_id), DataIn::new(&c.data, 4096))
            .unwrap();
    }
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    let done = sim.process_completions().unwrap();
    assert_eq!(done.len(), usize::from(n));
    for (d, b) in done.iter().zip(&stored) {
        assert_eq!((d.status, &d.data_in), (0, b));
    }
}

#[test]
fn an_idle_device_keeps_only_its_mailbox_page_mapped() {
    let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
    let pages = dev.len / PAGE;
    let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    let probe = ring.head_probe();
    write_then_read(&mut sim, &mut ring, 32, 0x11);
    let busy = present_pages(probe.mapping_addr(), pages);
    // the data area's pages the 32 commands used, the ring's entries
    assert!(busy > 32, "{busy} pages mapped after the I/O");
    probe.release_idle().unwrap();
    assert_eq!(
        present_pages(probe.mapping_addr(), pages),
        1,
        "the mailbox's page alone"
    );
    // the next commands map what they use again, and read back whole
    write_then_read(&mut sim, &mut ring, 32, 0x5a);
    assert_eq!(sim.broken(), None);
}
