//! Process-restart recovery with the `reset` policy: the configfs actions
//! are written around the (re)mapping of the ring, and the device is never
//! left blocked, even when the ring cannot be opened.

use std::fs;

use crate::util::device::sim_options;

use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{spawn_device, DeviceError, DeviceSpec, RecoveryPolicy, RestartBudget};
use tcmud_core::backend::mem::MemBackend;

/// Spawns a `reset`-policy device whose `/dev/uioN` is missing (the open
/// fails) over a fake configfs directory with empty action files; returns
/// the action files' contents afterwards (block_dev, reset_ring).
fn spawn_with_missing_uio(adopted: bool) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let configfs = dir.path().join("core/user_1/dev");
    fs::create_dir_all(configfs.join("action")).unwrap();
    fs::write(configfs.join("action/block_dev"), "").unwrap();
    fs::write(configfs.join("action/reset_ring"), "").unwrap();
    let spec = DeviceSpec {
        minor: 3,
        uio_name: "tcm-user/1/dev/thin/p/v".into(),
        dev_config: "thin/p/v".into(),
        dev_path: dir.path().join("uio3"),
        sysfs_dir: dir.path().join("sys/class/uio/uio3"),
        configfs_dir: Some(configfs.clone()),
        size_bytes: 1 << 20,
        recovery: RecoveryPolicy::Reset,
        restart_budget: RestartBudget::default(),
        adopted,
    };
    let bs = BackstoreHandle::new(
        std::sync::Arc::new(MemBackend::new(512, 2048)),
        BackstoreKind::Other { name: "mem".into() },
        1,
    )
    .unwrap();
    let err = spawn_device(spec, bs).unwrap_err();
    assert!(matches!(err, DeviceError::Ring { .. }), "{err}");
    let read = |knob: &str| fs::read_to_string(configfs.join("action").join(knob)).unwrap();
    (read("block_dev"), read("reset_ring"))
}

#[test]
fn reset_policy_blocks_resets_and_unblocks() {
    let (block_dev, reset_ring) = spawn_with_missing_uio(true);
    assert_eq!(reset_ring, "1");
    assert_eq!(block_dev, "0", "unblocked after the attempt");
}

/// A device this daemon saw being added has no stale ring: no configfs
/// actions (the kernel refuses them with EINVAL while it still configures
/// the device), whatever the policy.
#[test]
fn a_new_device_is_opened_without_recovery_actions() {
    let (block_dev, reset_ring) = spawn_with_missing_uio(false);
    assert_eq!(
        (block_dev.as_str(), reset_ring.as_str()),
        ("", ""),
        "actions untouched"
    );
}

/// `replay` on a ring without out-of-order completion (the only kind where it
/// is safe): commands the kernel queued before the daemon (re)started, between
/// `cmd_tail` and `cmd_head`, are executed.
#[test]
fn replay_executes_what_lies_between_tail_and_head() {
    use std::time::{Duration, Instant};
    use tcmud::device::spawn_device_with;
    use tcmud_core::backend::BlockBackend;
    use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

    let mem = std::sync::Arc::new(MemBackend::new(512, 2048));
    use tcmud_core::ring::layout::{CAP_READ_LEN, CAP_TMR};
    let in_order = SimConfig {
        flags: CAP_READ_LEN | CAP_TMR,
        ..SimConfig::default()
    };
    let (mut sim, dev) = KernelSim::new(in_order).unwrap();
    let mut ids: Vec<u16> = Vec::new();
    for i in 0..6u8 {
        let lba = u32::from(i) * 2;
        let l = lba.to_be_bytes();
        let cdb = [0x2a, 0, l[0], l[1], l[2], l[3], 0, 0, 2, 0];
        ids.push(sim.submit(&cdb, SimDir::Out(vec![i + 1; 1024])).unwrap());
    }
    sim.kick().unwrap();
    let spec = DeviceSpec {
        minor: 1,
        uio_name: "tcm-user/1/replay/thin/p/v".into(),
        dev_config: "thin/p/v".into(),
        dev_path: "/nonexistent".into(),
        sysfs_dir: "/nonexistent".into(),
        configfs_dir: None,
        size_bytes: 1 << 20,
        recovery: RecoveryPolicy::Replay,
        restart_budget: RestartBudget::default(),
        adopted: true,
    };
    let bs =
        BackstoreHandle::new(mem.clone(), BackstoreKind::Other { name: "mem".into() }, 2).unwrap();
    let done = actix::System::new().block_on(async move {
        let opts = sim_options(dev);
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while got.len() < 6 && Instant::now() < deadline {
                let _ = sim.wait_kick(Duration::from_millis(20)).unwrap();
                got.extend(sim.process_completions().unwrap());
            }
            let _ = tx.send((got, sim.broken().map(str::to_owned)));
        });
        let r = rx.await.unwrap();
        handle.stop().await;
        r
    });
    let (got, broken) = done;
    assert_eq!(broken, None);
    let mut got_ids: Vec<u16> = got.iter().map(|c| c.cmd_id).collect();
    got_ids.sort_unstable();
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(got_ids, want);
    // The first one executed meets the power-on unit attention; the others
    // were written.
    let mut ua = 0;
    for c in &got {
        let pos = ids.iter().position(|&id| id == c.cmd_id).unwrap();
        let i = u8::try_from(pos).expect("six commands");
        if c.status != 0 {
            assert_eq!(c.sense[2] & 0xf, 6);
            ua += 1;
            continue;
        }
        let mut b = vec![0u8; 1024];
        mem.read(u64::from(i) * 2, &mut b).unwrap();
        assert_eq!(b, vec![i + 1; 1024]);
    }
    assert_eq!(ua, 1);
}

/// `replay` is refused on an adopted ring that offers out-of-order completion
/// (the entries between tail and head may have completed already): the device
/// is not started, nothing is executed, and the error names the setting.
#[test]
fn replay_is_refused_on_an_out_of_order_ring() {
    use tcmud::device::{spawn_device_with, RecoveryError};
    use tcmud_core::backend::BlockBackend;
    use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

    let mem = std::sync::Arc::new(MemBackend::new(512, 2048));
    let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
    assert!(SimConfig::default().flags & tcmud_core::ring::layout::CAP_OOOC != 0);
    let cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0]; // WRITE(10) LBA 0, 2 blocks
    sim.submit(&cdb, SimDir::Out(vec![7; 1024])).unwrap();
    sim.kick().unwrap();
    let spec = DeviceSpec {
        adopted: true,
        recovery: RecoveryPolicy::Replay,
        ..DeviceSpec::simulated("thin/p/v", 1 << 20)
    };
    let bs =
        BackstoreHandle::new(mem.clone(), BackstoreKind::Other { name: "mem".into() }, 1).unwrap();
    let err = actix::System::new()
        .block_on(async move { spawn_device_with(spec, bs, sim_options(dev)).map(|_| ()) })
        .unwrap_err();
    assert!(
        matches!(err, DeviceError::Recovery(RecoveryError::ReplayOutOfOrder)),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("recovery = \"reset\""), "{text}");
    assert!(
        sim.process_completions().unwrap().is_empty(),
        "nothing completed"
    );
    let mut b = vec![0u8; 1024];
    mem.read(0, &mut b).unwrap();
    assert_eq!(b, vec![0u8; 1024], "the stale WRITE was not executed");
}

/// `reset` without a configfs directory refuses the adopted device rather
/// than falling back to replaying its ring.
#[test]
fn reset_without_configfs_refuses_instead_of_replaying() {
    use tcmud::device::RecoveryError;
    let dir = tempfile::tempdir().unwrap();
    let spec = DeviceSpec {
        minor: 3,
        uio_name: "tcm-user/1/dev/thin/p/v".into(),
        dev_config: "thin/p/v".into(),
        dev_path: dir.path().join("uio3"),
        sysfs_dir: dir.path().join("sys/class/uio/uio3"),
        configfs_dir: None,
        size_bytes: 1 << 20,
        recovery: RecoveryPolicy::Reset,
        restart_budget: RestartBudget::default(),
        adopted: true,
    };
    let bs = BackstoreHandle::new(
        std::sync::Arc::new(MemBackend::new(512, 2048)),
        BackstoreKind::Other { name: "mem".into() },
        1,
    )
    .unwrap();
    let err = spawn_device(spec, bs).unwrap_err();
    assert!(
        matches!(err, DeviceError::Recovery(RecoveryError::NoConfigfs)),
        "{err}"
    );
}
