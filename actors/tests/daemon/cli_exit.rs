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

#[test]
fn install_script_places_binary_unit_config_and_manual_pages() {
    let root = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/install.sh");
    let run = || {
        std::process::Command::new(&script)
            .args(["--bin", env!("CARGO_BIN_EXE_tcmud"), "--destdir"])
            .arg(root.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = root.path();
    for f in [
        "usr/bin/tcmud",
        "lib/systemd/system/tcmud.service",
        "etc/tcmud/tcmud.toml",
        "usr/share/man/man8/tcmud.8",
        "usr/share/man/man8/tcmud-volume-snapshot.8",
        "usr/share/man/man5/tcmud.toml.5",
        "usr/share/doc/tcmud/control.md",
        "usr/share/dbus-1/system.d/tcmud.conf",
    ] {
        assert!(r.join(f).is_file(), "{f} not installed");
    }
    // Bus activation only when asked for (tcmu-runner ships the same file).
    let activation = "usr/share/dbus-1/system-services/org.kernel.TCMUService1.service";
    assert!(!r.join(activation).exists());
    // An existing configuration is kept; the default goes beside it.
    std::fs::write(r.join("etc/tcmud/tcmud.toml"), "# mine\n").unwrap();
    assert!(run().status.success());
    assert_eq!(
        std::fs::read_to_string(r.join("etc/tcmud/tcmud.toml")).unwrap(),
        "# mine\n"
    );
    assert!(r.join("etc/tcmud/tcmud.toml.default").is_file());
}
