//! Config files: the shipped default, bad values with locations, CLI overrides.

use std::path::{Path, PathBuf};
use tcmud::config::{
    apply_overrides, from_toml, load, ConfigError, DaemonConfig, LogFormat, Overrides,
    RecoveryPolicy, ThreadCounts,
};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tcmud.toml")
}

fn problems(text: &str) -> Vec<String> {
    match from_toml(text, "t.toml") {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn example_file_is_the_default() {
    let cfg = load(Some(&example())).unwrap();
    assert_eq!(cfg, DaemonConfig::default());
    assert_eq!(cfg.pools.len(), 1);
    let p = cfg.pool("default").unwrap();
    assert_eq!((p.chunk_size, p.capacity_bytes), (64 << 10, 16 << 30));
    assert_eq!(cfg.sys_root, Path::new("/sys"));
    assert!(!cfg.netlink_replies);
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(from_toml("", "e").unwrap(), DaemonConfig::default());
}

#[test]
fn every_bad_value_is_reported_with_line_and_reason() {
    let text = r#"[daemon]
sys_root = "sys"

[[pool]]
name = "a"
path = "/p/a"
chunk_size = "48KiB"

[[pool]]
name = "a"
path = "relative"
chunk_size = "2MiB"
low_water_pct = 0
"#;
    let p = problems(text);
    assert_eq!(p.len(), 6, "{p:#?}");
    assert!(
        p[0].starts_with("line 2, column 12: daemon.sys_root:"),
        "{}",
        p[0]
    );
    assert!(p[0].contains("absolute"));
    assert!(
        p[1].starts_with("line 7, column 14: pool[0].chunk_size: 49152 bytes"),
        "{}",
        p[1]
    );
    assert!(
        p[2].starts_with("line 10, column 8: pool[1].name:") && p[2].contains("twice"),
        "{}",
        p[2]
    );
    assert!(p[3].starts_with("line 11, column 8: pool[1].path") && p[3].contains("absolute"));
    assert!(p[4].contains("pool[1].chunk_size") && p[4].contains("power of two"));
    assert!(
        p[5].starts_with("line 13, column 17: pool[1].low_water_pct: 0"),
        "{}",
        p[5]
    );
}

#[test]
fn syntax_errors_name_the_place() {
    for (text, needle) in [
        ("[daemon]\nrecovery = \"maybe\"\n", "line 2"),
        ("[daemon]\nlog_levl = \"info\"\n", "log_levl"),
        (
            "[[pool]]\nname = \"x\"\npath = \"/x\"\ncapacity = \"3 parsecs\"\n",
            "unknown unit",
        ),
        ("[[pool]]\nname = \"x\"\n", "path"),
    ] {
        match from_toml(text, "s.toml") {
            Err(ConfigError::Syntax { message, .. }) => {
                assert!(message.contains(needle), "{message}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn capacity_must_be_a_multiple_of_chunk() {
    let p = problems("[[pool]]\nname = \"x\"\npath = \"/x\"\ncapacity = 100000\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("multiple of chunk_size"), "{}", p[0]);
}

#[test]
fn bad_log_filter_is_rejected() {
    let p = problems("[daemon]\nlog_level = \"tcmud=loud\"\n");
    assert!(p[0].contains("daemon.log_level"), "{}", p[0]);
}

#[test]
fn overrides_replace_and_are_checked() {
    let o = Overrides {
        log_level: Some("debug".into()),
        log_format: Some(LogFormat::Json),
        recovery: Some(RecoveryPolicy::Replay),
        netlink_replies: Some(true),
        sys_root: Some("/tmp/sys".into()),
        ..Overrides::default()
    };
    let cfg = apply_overrides(DaemonConfig::default(), &o).unwrap();
    assert_eq!(cfg.log_level, "debug");
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(cfg.recovery, RecoveryPolicy::Replay);
    assert!(cfg.netlink_replies);
    assert_eq!(cfg.sys_root, Path::new("/tmp/sys"));
    assert_eq!(cfg.dev_root, Path::new("/dev"));

    let bad = Overrides {
        dev_root: Some("dev".into()),
        ..Overrides::default()
    };
    let err = apply_overrides(DaemonConfig::default(), &bad).unwrap_err();
    assert!(err.to_string().contains("--dev-root"), "{err}");
}

#[test]
fn missing_file_is_an_io_error() {
    let err = load(Some(Path::new("/nonexistent/tcmud.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/tcmud.toml"));
}

#[test]
fn metadata_cache_is_read_and_checked() {
    let cfg = from_toml(
        "[[pool]]\nname = \"x\"\npath = \"/x\"\nmetadata_cache = \"8MiB\"\n",
        "m.toml",
    )
    .unwrap();
    assert_eq!(cfg.pool("x").unwrap().metadata_cache, 8 << 20);
    assert_eq!(
        from_toml("[[pool]]\nname = \"y\"\npath = \"/y\"\n", "d.toml")
            .unwrap()
            .pool("y")
            .unwrap()
            .metadata_cache,
        64 << 20
    );
    let p = problems("[[pool]]\nname = \"x\"\npath = \"/x\"\nmetadata_cache = \"4KiB\"\n");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("line 4, column 18: pool[0].metadata_cache: 4096 bytes")
            && p[0].contains("at least 1MiB"),
        "{}",
        p[0]
    );
}

#[test]
fn sparse_data_is_read_off_by_default_and_checked() {
    let cfg = from_toml(
        "[[pool]]\nname = \"x\"\npath = \"/x\"\nsparse_data = true\n",
        "s.toml",
    )
    .unwrap();
    assert!(cfg.pool("x").unwrap().sparse_data);
    let d = from_toml("[[pool]]\nname = \"y\"\npath = \"/y\"\n", "d.toml").unwrap();
    assert!(
        !d.pool("y").unwrap().sparse_data,
        "preallocating is the default"
    );
    let err = from_toml(
        "[[pool]]\nname = \"x\"\npath = \"/x\"\nsparse_data = \"yes\"\n",
        "b.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("b.toml") && err.contains("line 4") && err.contains("bool"),
        "{err}"
    );
    // and the pool is opened with it
    let spec = tcmud::backstore::PoolSpec::from(cfg.pool("x").unwrap());
    assert!(spec.options.sparse_data);
    let spec = tcmud::backstore::PoolSpec::from(d.pool("y").unwrap());
    assert!(!spec.options.sparse_data);
}

#[test]
fn metrics_are_off_by_default_and_take_an_address() {
    assert_eq!(DaemonConfig::default().metrics, None);
    let c = from_toml("[daemon]\nmetrics = \"127.0.0.1:9771\"\n", "t").unwrap();
    assert_eq!(c.metrics, Some("127.0.0.1:9771".parse().unwrap()));
    let p = problems("[daemon]\nmetrics = \"localhost\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("daemon.metrics") && p[0].contains("not an address"),
        "{p:?}"
    );
}

#[test]
fn thread_counts_default_from_the_cores_and_are_checked() {
    let d = DaemonConfig::default();
    assert_eq!(
        d.thread_counts(2),
        ThreadCounts {
            device: 2,
            io: 8,
            io_per_backstore: 4
        }
    );
    assert_eq!(d.thread_counts(16).io, 36);
    let cfg = from_toml(
        "[daemon]\ndevice_threads = 3\nio_threads = 6\nio_jobs_per_backstore = 9\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        cfg.thread_counts(64),
        ThreadCounts {
            device: 3,
            io: 6,
            // never more than the I/O threads
            io_per_backstore: 6
        }
    );
    let p = problems("[daemon]\nio_threads = 5000\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("line 2") && p[0].contains("daemon.io_threads") && p[0].contains("1024"),
        "{p:?}"
    );
}

#[test]
fn nice_defaults_to_minus_ten_and_is_checked() {
    assert_eq!(DaemonConfig::default().nice, -10);
    assert_eq!(from_toml("[daemon]\nnice = 0\n", "t").unwrap().nice, 0);
    assert_eq!(from_toml("[daemon]\nnice = -20\n", "t").unwrap().nice, -20);
    for bad in ["-21", "20", "300"] {
        let p = problems(&format!("[daemon]\nnice = {bad}\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("line 2") && p[0].contains("daemon.nice") && p[0].contains("-20 to 19"),
            "{p:?}"
        );
    }
}

#[test]
fn alua_section_is_read_and_checked() {
    use tcmud_core::scsi::{AluaConfig, AluaPeer, NonOwner};
    let cfg = from_toml(
        "[daemon.alua]\ngroup = 2\nrelative_port = 2\npeers = [{ group = 1, relative_port = 1 }]\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.alua,
        Some(AluaConfig {
            group: 2,
            relative_port: 2,
            peers: vec![AluaPeer {
                group: 1,
                relative_port: 1
            }],
            transition_secs: 30,
            non_owner: NonOwner::ActiveNonOptimized,
            preferred: None,
        })
    );
    assert_eq!(DaemonConfig::default().alua, None);
    let standby = from_toml(
        "[daemon.alua]\ngroup = 1\nrelative_port = 1\nnon_owner = \"standby\"\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(standby.alua.map(|a| a.non_owner), Some(NonOwner::Standby));
    let e = from_toml(
        "[daemon.alua]\ngroup = 1\nrelative_port = 1\nnon_owner = \"offline\"\n",
        "a.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line 4") && e.contains("`offline`") && e.contains("`standby`"),
        "{e}"
    );
    let p = problems(
        "[daemon.alua]\ngroup = 1\nrelative_port = 1\npeers = [{ group = 1, relative_port = 2 }]\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("line 1")
            && p[0].contains("daemon.alua")
            && p[0].contains("group 1 named twice"),
        "{p:?}"
    );
    let p = problems("[daemon.alua]\ngroup = 1\nrelative_port = 0\n");
    assert!(p[0].contains("relative target port 0 is reserved"), "{p:?}");
    let pref = from_toml(
        "[daemon.alua]\ngroup = 1\nrelative_port = 1\npeers = [{ group = 2, relative_port = 2 }]\npreferred_group = 2\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(pref.alua.and_then(|a| a.preferred), Some(2));
    let p = problems("[daemon.alua]\ngroup = 1\nrelative_port = 1\npreferred_group = 3\n");
    assert!(
        p.len() == 1 && p[0].contains("preferred target port group 3"),
        "{p:?}"
    );
}
