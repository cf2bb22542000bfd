//! The `tcmud` binary on a host that cannot serve: a one-line reason on
//! stderr, no colour codes, no panic, exit status 1.

use std::process::Command;

fn tcmud(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TCMUD_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_host_without_target_core_user_gets_a_clear_exit() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let (code, err) = tcmud(&[
        "run",
        "--sys-root",
        r,
        "--configfs-root",
        r,
        "--dev-root",
        r,
        "--run-dir",
        r,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("target_core_user"), "{err}");
    assert!(err.contains("modprobe"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no ANSI colour codes off a terminal: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_config_file_is_named_once() {
    let (code, err) = tcmud(&["run", "--config", "/nonexistent/tcmud.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/tcmud.toml"), "{err}");
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "cause printed once: {err}"
    );
}
