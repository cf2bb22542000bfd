//! Process-restart recovery with the `reset` policy: the configfs actions
//! are written around the (re)mapping of the ring, and the device is never
//! left blocked, even when the ring cannot be opened.

use std::fs;

use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{spawn_device, DeviceError, DeviceSpec, RecoveryPolicy, RestartBudget};
use tcmud_core::backend::mem::MemBackend;

#[test]
fn reset_policy_blocks_resets_and_unblocks() {
    let dir = tempfile::tempdir().unwrap();
    let configfs = dir.path().join("core/user_1/dev");
    fs::create_dir_all(configfs.join("action")).unwrap();
    fs::write(configfs.join("action/block_dev"), "").unwrap();
    fs::write(configfs.join("action/reset_ring"), "").unwrap();
    let spec = DeviceSpec {
        minor: 3,
        uio_name: "tcm-user/1/dev/thin/p/v".into(),
        dev_config: "thin/p/v".into(),
        dev_path: dir.path().join("uio3"), // missing: the open fails
        sysfs_dir: dir.path().join("sys/class/uio/uio3"),
        configfs_dir: Some(configfs.clone()),
        size_bytes: 1 << 20,
        recovery: RecoveryPolicy::Reset,
        restart_budget: RestartBudget::default(),
    };
    let bs = BackstoreHandle::new(
        std::sync::Arc::new(MemBackend::new(512, 2048)),
        BackstoreKind::Other { name: "mem".into() },
        1,
    )
    .unwrap();
    let err = spawn_device(spec, bs).unwrap_err();
    assert!(matches!(err, DeviceError::Ring { .. }), "{err}");
    assert_eq!(
        fs::read_to_string(configfs.join("action/reset_ring")).unwrap(),
        "1"
    );
    assert_eq!(
        fs::read_to_string(configfs.join("action/block_dev")).unwrap(),
        "0",
        "unblocked after the attempt"
    );
}
