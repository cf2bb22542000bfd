//! One tcmud per host: the lock under the run directory, and a second daemon that
//! refuses to start before it touches a module parameter.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use tcmud::supervisor::instance::{InstanceError, InstanceLock, LOCK_FILE};

#[test]
fn a_second_lock_names_the_holder_and_is_free_after_release() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run/tcmud");
    let first = InstanceLock::acquire(&run).unwrap();
    assert_eq!(
        fs::read_to_string(run.join(LOCK_FILE)).unwrap().trim(),
        std::process::id().to_string()
    );
    assert_eq!(
        fs::metadata(&run).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let err = InstanceLock::acquire(&run).unwrap_err();
    assert!(matches!(err, InstanceError::Held { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains("tcmud.lock"), "{msg}");
    drop(first);
    let again = InstanceLock::acquire(&run).unwrap();
    drop(again);
}

#[test]
fn a_second_daemon_exits_before_touching_module_parameters() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let params = r.join("sys/module/target_core_user/parameters");
    fs::create_dir_all(&params).unwrap();
    fs::create_dir_all(r.join("cfg/target/core")).unwrap();
    for p in ["block_netlink", "reset_netlink"] {
        fs::write(params.join(p), "0\n").unwrap();
    }
    let run = r.join("run");
    let _held = InstanceLock::acquire(&run).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .arg("run")
        .arg("--sys-root")
        .arg(r.join("sys"))
        .arg("--configfs-root")
        .arg(r.join("cfg"))
        .arg("--dev-root")
        .arg(r)
        .arg("--run-dir")
        .arg(&run)
        .env_remove("RUST_LOG")
        .env_remove("TCMUD_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another tcmud is running"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    for p in ["block_netlink", "reset_netlink"] {
        assert_eq!(
            fs::read_to_string(params.join(p)).unwrap(),
            "0\n",
            "{p} was written by the second daemon"
        );
    }
}
