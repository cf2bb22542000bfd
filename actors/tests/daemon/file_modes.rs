//! Pools are owner-only whatever the caller's umask: directories 0700, files (data,
//! metadata, marker, lock, seal) 0600. Run with umask 0 (set in a child process of its own).

use crate::util::{own_process, test_name};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn tcmud(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TCMUD_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcmud {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every path under `dir` (itself included) with a mode other than 0700 (dirs) or
/// 0600 (files).
fn loose(dir: &Path, out: &mut Vec<String>) {
    let m = fs::symlink_metadata(dir).unwrap();
    if m.mode() & 0o777 != 0o700 {
        out.push(format!("{} {:o}", dir.display(), m.mode() & 0o777));
    }
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            loose(&p, out);
        } else if m.mode() & 0o777 != 0o600 {
            out.push(format!("{} {:o}", p.display(), m.mode() & 0o777));
        }
    }
}

#[test]
fn pools_are_owner_only_with_umask_0() {
    // The umask is the process's: change it in a process of its own.
    if !own_process(&test_name!(pools_are_owner_only_with_umask_0)) {
        return;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let root = tempfile::tempdir().unwrap();
    let fresh = root.path().join("fresh");
    // An empty directory an administrator made world-readable.
    let existing = root.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [&fresh, &existing] {
        let d = dir.to_str().unwrap();
        tcmud(&["pool", "create", d, "--capacity", "16MiB"]);
        tcmud(&["volume", "create", d, "v", "--size", "8MiB"]);
        let mut bad = Vec::new();
        loose(dir, &mut bad);
        assert!(bad.is_empty(), "not owner-only: {bad:?}");
        // The tree is not empty: the data file and sled's files were checked.
        assert!(fs::read_dir(dir).unwrap().count() >= 3);
    }
}

#[test]
fn the_systemd_unit_sets_an_owner_only_umask() {
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/tcmud.service"
    ))
    .unwrap();
    assert!(unit.lines().any(|l| l.trim() == "UMask=0077"), "{unit}");
    assert!(
        unit.lines().any(|l| l.trim() == "RuntimeDirectory=tcmud"),
        "{unit}"
    );
}
