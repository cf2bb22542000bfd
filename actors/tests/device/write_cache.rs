//! The write-cache setting a device starts with comes from configfs
//! (`attrib/emulate_write_cache`), so a restarted daemon reports what the
//! initiator was told before; unreadable means write-through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::device::workload::{clear_unit_attention, one};
use crate::util::device::{sim_options, sim_spec, BS_U32};
use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{configfs_write_cache, spawn_device_with, RestartBudget};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

#[test]
fn write_cache_follows_configfs_and_defaults_to_write_through() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev0");
    // No attrib/ directory at all: write-through.
    assert!(!configfs_write_cache(&dev));
    std::fs::create_dir_all(dev.join("attrib")).unwrap();
    std::fs::write(dev.join("attrib/emulate_write_cache"), "1\n").unwrap();
    assert!(configfs_write_cache(&dev));
    std::fs::write(dev.join("attrib/emulate_write_cache"), "0\n").unwrap();
    assert!(!configfs_write_cache(&dev));
}

/// MODE SELECT(6) of the current caching page with WCE set to `on`.
fn select_wce(sim: &mut KernelSim, on: bool) -> SimCompletion {
    // MODE SENSE(6), DBD, current caching page (08), allocation length 255.
    let c = one(sim, &[0x1A, 0x08, 0x08, 0, 255, 0], SimDir::In(255));
    assert_eq!(c.status, 0);
    let mut page = c.data_in;
    page[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
    if on {
        page[6] |= 0x04;
    } else {
        page[6] &= !0x04;
    }
    let len = u8::try_from(page.len()).unwrap();
    // MODE SELECT(6), PF=1, parameter list length = the page we send.
    one(sim, &[0x15, 0x10, 0, 0, len, 0], SimDir::Out(page))
}

#[test]
fn mode_select_of_wce_is_saved_in_configfs() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev0");
    std::fs::create_dir_all(dev.join("attrib")).unwrap();
    let knob = dev.join("attrib/emulate_write_cache");
    std::fs::write(&knob, "0\n").unwrap();
    let mut spec = sim_spec("wce", RestartBudget::default());
    spec.configfs_dir = Some(dev.clone());
    let backend: Arc<dyn BlockBackend> = Arc::new(MemBackend::new(BS_U32, 1024));
    let bs = BackstoreHandle::new(
        backend,
        BackstoreKind::Other {
            name: "memory".into(),
        },
        2,
    )
    .unwrap();
    // Waits (20 s at most) until the knob reads `want`; returns what it read last.
    let wait_knob = {
        let knob = knob.clone();
        move |want: &str| {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let v = std::fs::read_to_string(&knob).unwrap();
                if v.trim() == want || Instant::now() > deadline {
                    return v;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    actix::System::new().block_on(async move {
        let (mut sim, simdev) = KernelSim::new(SimConfig::default()).unwrap();
        let opts = sim_options(simdev);
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let on = select_wce(&mut sim, true);
            let after_on = wait_knob("1");
            let off = select_wce(&mut sim, false);
            let after_off = wait_knob("0");
            let cur = one(&mut sim, &[0x1A, 0x08, 0x08, 0, 255, 0], SimDir::In(255));
            let wce_now = cur.data_in[6] & 0x04;
            let _ = done_tx.send((on.status, after_on, off.status, after_off, wce_now));
        });
        let (on, after_on, off, after_off, wce_now) = done_rx.await.unwrap();
        // Saved in the background, in order, the latest value last.
        assert_eq!((on, after_on.trim()), (0, "1"));
        assert_eq!((off, after_off.trim()), (0, "0"));
        assert_eq!(wce_now, 0, "the device reports what was selected last");
        handle.stop().await;
    });
    // What a restarted daemon would start with.
    assert!(!configfs_write_cache(&dev));
}

/// The configfs write of MODE SELECT's choice waits, with netlink replies on,
/// for the supervisor's RECONFIG answer, and the supervisor may be draining
/// this very device. Modelled with a FIFO as `attrib/emulate_write_cache`:
/// its writer blocks until someone reads. The MODE SELECT must complete and
/// the device must drain (stop) while that write is still blocked; the value
/// arrives once the "supervisor" reads.
#[test]
fn mode_select_completes_and_device_drains_while_the_configfs_write_blocks() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev0");
    std::fs::create_dir_all(dev.join("attrib")).unwrap();
    let knob = dev.join("attrib/emulate_write_cache");
    nix::unistd::mkfifo(&knob, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut spec = sim_spec("wce-fifo", RestartBudget::default());
    spec.configfs_dir = Some(dev.clone());
    let backend: Arc<dyn BlockBackend> = Arc::new(MemBackend::new(BS_U32, 1024));
    let bs = BackstoreHandle::new(
        backend,
        BackstoreKind::Other {
            name: "memory".into(),
        },
        2,
    )
    .unwrap();
    // Given, so that the start does not read the FIFO.
    let lun = tcmud_core::scsi::LunConfig {
        write_cache: Some(false),
        ..Default::default()
    };
    let (status, stopped, wce_after_echo) = actix::System::new().block_on(async move {
        let (mut sim, simdev) = KernelSim::new(SimConfig::default()).unwrap();
        let mut opts = sim_options(simdev);
        opts.lun = Some(lun);
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let on = select_wce(&mut sim, true);
            // The simulated kernel goes back with the result: alive until the end.
            let _ = done_tx.send((on.status, sim));
        });
        let done = tokio::time::timeout(Duration::from_secs(30), done_rx).await;
        let (status, mut sim) = match done {
            Ok(r) => {
                let (s, sim) = r.unwrap();
                (Ok(s), Some(sim))
            }
            Err(e) => (Err(e), None),
        };
        // A WRITECACHE event arriving while the choice is still being saved
        // (the echo of an earlier value) does not undo the initiator's choice.
        handle.set_write_cache(false);
        let wce_after_echo = sim.as_mut().map(|sim| {
            let cur = one(sim, &[0x1A, 0x08, 0x08, 0, 255, 0], SimDir::In(255));
            cur.data_in[6] & 0x04
        });
        let stopped = tokio::time::timeout(Duration::from_secs(30), handle.stop())
            .await
            .is_ok();
        drop(sim);
        (status.ok(), stopped, wce_after_echo)
    });
    assert_eq!(
        status,
        Some(0),
        "MODE SELECT did not complete while the configfs write was blocked"
    );
    assert!(stopped, "the drain waited for the configfs write");
    assert_eq!(
        wce_after_echo,
        Some(0x04),
        "a stale WRITECACHE event undid MODE SELECT"
    );
    // The "supervisor" answers now: the saver's write goes through.
    let got = std::fs::read_to_string(&knob).unwrap();
    assert_eq!(got.trim(), "1");
}
