//! The shipped systemd unit: ordering before target.service, the watchdog,
//! and the sandbox; `systemd-analyze verify` accepts it where installed.

use std::path::Path;

fn unit() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/tcmud.service"))
        .unwrap()
}

fn has(unit: &str, line: &str) -> bool {
    unit.lines().any(|l| l.trim() == line)
}

#[test]
fn unit_orders_watches_and_sandboxes() {
    let u = unit();
    for want in [
        "Type=notify",
        "Before=target.service",
        "WatchdogSec=30",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER",
        "RestrictAddressFamilies=AF_UNIX AF_NETLINK",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=tcmud",
        "RuntimeDirectory=tcmud",
        "ReadWritePaths=-/var/lib/tcmud",
        "UMask=0077",
    ] {
        assert!(has(&u, want), "dist/tcmud.service lacks {want:?}");
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze not installed: verify skipped");
        return;
    };
    if !out.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The binary is not installed here: point ExecStart at one that exists.
    let u = unit().replace("/usr/bin/tcmud", "/bin/true");
    let path = dir.path().join("tcmud.service");
    std::fs::write(&path, u).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("tcmud.service"))
        .collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify: {text}"
    );
}
