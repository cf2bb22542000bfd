//! No stale data-area bytes reach the initiator, on the core path: the
//! simulated kernel (which gathers data-in like `tcmu_handle_completion`:
//! the whole buffer unless READ_LEN says less, read_len 0 ignored, READ_LEN
//! ignored without CAP_READ_LEN) -> Ring -> `Lun::execute_io` over the data
//! area -> `Ring::complete`. The data area is filled with a pattern by
//! ordinary WRITEs and READs (the simulator, like the kernel, reuses the
//! lowest free data blocks and does not clear them), then commands with
//! oversized or unexpected data-in buffers must return no pattern byte.

use std::sync::Arc;
use std::time::Duration;

use crate::util::narrow::fit;
use crate::util::ring::fetch_cmds;
use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::ring::layout::{CAP_OOOC, CAP_READ_LEN};
use tcmud_core::ring::{Completion, DataIn, Ring};
use tcmud_core::scsi::{data_direction, DataDirection, Lun, LunConfig};
use tcmud_core::sim::{
    find_leak, leak_pattern, leak_probes, KernelSim, SimCompletion, SimConfig, SimDir,
};

const BS: usize = 512;
const DISK_BLOCKS: u64 = 4096;
/// Never written: reads return zeros.
const CLEAN_LBA: u32 = 3000;
/// One fill command: 64 KiB, the largest probe buffer.
const PIECE: usize = 64 << 10;

/// Fetches every command, runs it over its data-area buffers and completes
/// it with its data-in (none for a data-out command); returns what the
/// simulated initiator received.
fn serve(sim: &mut KernelSim, ring: &mut Ring, lun: &Lun, n: usize) -> Vec<SimCompletion> {
    sim.kick().unwrap();
    ring.drain_events().unwrap();
    let cmds = fetch_cmds(ring);
    assert_eq!(cmds.len(), n);
    for c in cmds {
        let cdb = c.cdb.as_bytes();
        let data = ring.data(&c.data).unwrap();
        let (mut sink, mut none): (_, &mut [u8]) = (data, &mut []);
        let empty: &[u8] = &[];
        let out = data_direction(cdb) == Some(DataDirection::Out);
        let r = if out {
            lun.execute_io(cdb, &data, &mut none)
        } else {
            lun.execute_io(cdb, &empty, &mut sink)
        };
        let done = match r.sense_bytes() {
            Some(sense) => Completion::check_condition(c.cmd_id, &sense),
            None => Completion::status(c.cmd_id, r.status, None),
        };
        let data_in = if out {
            DataIn::data_out(&c.data)
        } else {
            DataIn::new(&c.data, r.data_in_len)
        };
        ring.complete(done, data_in).unwrap();
    }
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    let done = sim.process_completions().unwrap();
    assert_eq!(sim.broken(), None);
    assert_eq!(done.len(), n);
    done
}

/// `pieces` concurrent 64 KiB WRITEs of the pattern from LBA 0, then READs
/// of them: the lowest `pieces * 64 KiB` of the data area hold the pattern,
/// in data-out and data-in buffers alike.
fn fill(sim: &mut KernelSim, ring: &mut Ring, lun: &Lun, pieces: usize) {
    let blocks = fit::<u16, _>(PIECE / BS);
    for write in [true, false] {
        for i in 0..pieces {
            let lba = fit::<u32, _>(i * PIECE / BS);
            let (op, dir) = if write {
                (0x2a, SimDir::Out(leak_pattern(PIECE)))
            } else {
                (0x28, SimDir::In(PIECE))
            };
            let l = lba.to_be_bytes();
            let [bh, bl] = blocks.to_be_bytes();
            let cdb = [op, 0, l[0], l[1], l[2], l[3], 0, bh, bl, 0];
            sim.submit(&cdb, dir).unwrap();
        }
        for c in serve(sim, ring, lun, pieces) {
            assert_eq!(c.status, 0, "fill command");
            if !write {
                assert_eq!(c.data_in, leak_pattern(PIECE), "fill read");
            }
        }
    }
}

/// Every probe on a fresh device over `backend` with mailbox `flags`;
/// returns the probes that leaked.
fn probe_all(flags: u16, backend: Arc<dyn BlockBackend>) -> Vec<String> {
    let cfg = SimConfig {
        flags,
        ..SimConfig::default()
    };
    let (mut sim, dev) = KernelSim::new(cfg).unwrap();
    sim.set_poison_data_in(false); // stale bytes, as the kernel leaves them
    let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    let lun = Lun::new(LunConfig::default(), backend);
    let _ = lun.execute(&[0; 6], &[], &mut []); // the power-on unit attention
    let whole = cfg.data_size / PIECE;
    fill(&mut sim, &mut ring, &lun, whole);
    let mut leaks = Vec::new();
    for p in leak_probes(CLEAN_LBA) {
        // The probe gets the lowest free blocks: put the pattern there again
        // (an earlier probe's completion zeroed what it did not write).
        fill(&mut sim, &mut ring, &lun, 2);
        sim.submit(&p.cdb, SimDir::In(p.data_in)).unwrap();
        let c = serve(&mut sim, &mut ring, &lun, 1).remove(0);
        if let Some(at) = find_leak(&c.data_in) {
            leaks.push(format!(
                "{} (status {}, read_len {:?}): {} bytes back, pattern at {at}",
                p.name,
                c.status,
                c.read_len,
                c.data_in.len()
            ));
        }
    }
    leaks
}

fn mem() -> Arc<dyn BlockBackend> {
    Arc::new(MemBackend::new(fit(BS), DISK_BLOCKS))
}

#[test]
fn no_stale_bytes_with_read_len() {
    let leaks = probe_all(CAP_OOOC | CAP_READ_LEN, mem());
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
}

#[test]
fn no_stale_bytes_without_read_len() {
    // Older kernels: the whole data-in buffer goes to the initiator.
    let leaks = probe_all(CAP_OOOC, mem());
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
    let leaks = probe_all(0, mem()); // and in-order completion
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
}

#[test]
fn no_stale_bytes_from_a_file_image() {
    // READs `pread` straight into the data area.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    for flags in [CAP_OOOC | CAP_READ_LEN, CAP_OOOC] {
        let f = FileBackend::create(&img, fit(BS), DISK_BLOCKS * BS as u64).unwrap();
        let leaks = probe_all(flags, Arc::new(f));
        assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn zeroing_crosses_fragmented_buffers() {
    use crate::util::zero_copy::{finish, fragmented, setup, BLOCK};
    // (bytes written, data-out CDB); no CAP_READ_LEN: the whole buffer goes
    // out, so every byte not written must be zero (the simulator fills
    // fresh data-in buffers with 0xa5).
    for (written, data_out) in [(5000, false), (0, false), (BLOCK, false), (0, true)] {
        let (mut sim, mut ring) = setup();
        let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
        let mine = vec![7u8; written];
        ring.write_data_in(&cmd.data, &mine).unwrap();
        let data_in = if data_out {
            DataIn::data_out(&cmd.data)
        } else {
            DataIn::new(&cmd.data, written)
        };
        ring.complete(Completion::good(cmd.cmd_id), data_in)
            .unwrap();
        let done = finish(&mut sim, &mut ring, &others);
        let c = done.iter().find(|c| c.cmd_id == cmd.cmd_id).unwrap();
        assert_eq!(c.data_in.len(), 3 * BLOCK);
        assert_eq!(&c.data_in[..written], &mine[..]);
        assert!(
            c.data_in[written..].iter().all(|&b| b == 0),
            "written {written}, data-out {data_out}"
        );
    }
}
