//! The production device factory without a kernel: classification through the
//! backstore parser, errno of failures, pools added on reload.

use tcmud::config::{DaemonConfig, PoolConfig, RecoveryPolicy};
use tcmud::supervisor::real::{classify, RealFactory};
use tcmud::supervisor::{DeviceFactory, DeviceRequest, Ownership};
use tcmud_core::netlink::UioName;

fn request(dir: &std::path::Path, dev_config: &str) -> DeviceRequest {
    let name = format!("tcm-user/1/d/{dev_config}");
    DeviceRequest {
        minor: 0,
        uio: UioName::parse(&name).unwrap(),
        uio_name: name,
        dev_path: dir.join("dev/uio0"),
        sysfs_dir: dir.join("sys/class/uio/uio0"),
        configfs_dir: None,
        size_bytes: 1 << 20,
        block_size: 512,
        recovery: RecoveryPolicy::Reset,
        adopted: false,
        lost_event: false,
        drain_timeout: None,
        alua: None,
    }
}

#[test]
fn classification_follows_the_backstore_parser() {
    assert_eq!(classify("thin/default/vol"), Ownership::Ours);
    assert_eq!(classify("file//var/img"), Ownership::Ours);
    assert_eq!(classify("qcow//var/img"), Ownership::Foreign);
    // rbd/ is served by builds with the rbd feature, else tcmu-runner's.
    let rbd = match cfg!(feature = "rbd") {
        true => Ownership::Ours,
        false => Ownership::Foreign,
    };
    assert_eq!(classify("rbd/pool/img"), rbd);
    assert_eq!(classify(""), Ownership::Foreign);
    assert!(matches!(classify("thin/onlypool"), Ownership::Invalid(_)));
}

fn pool(dir: &std::path::Path, name: &str) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        path: dir.join(name),
        chunk_size: 64 << 10,
        capacity_bytes: 64 << 20,
        low_water_pct: 90,
        auto_create: true,
        metadata_cache: 64 << 20,
        sparse_data: false,
    }
}

#[actix::test]
async fn failures_carry_errnos_and_reloaded_pools_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DaemonConfig {
        pools: vec![pool(dir.path(), "a")],
        ..DaemonConfig::default()
    };
    let mut f = RealFactory::new(&cfg);
    // Unknown pool: ENOENT, nothing created.
    let e = f
        .spawn(request(dir.path(), "thin/b/vol"))
        .err()
        .expect("unknown pool must fail");
    assert_eq!(e.errno, libc::ENOENT, "{e}");
    assert!(!dir.path().join("b").exists());
    // After a reload that adds pool b, the pool is created and the volume with it;
    // the device itself fails because there is no /dev/uio0 here.
    // No file_roots: file/ is off.
    let e = f
        .spawn(request(dir.path(), "file//nonexistent-dir/img"))
        .err()
        .expect("file/ is off");
    assert_eq!(e.errno, libc::EACCES, "{e}");
    assert!(e.message.contains("file_roots"), "{e}");
    let cfg2 = DaemonConfig {
        pools: vec![pool(dir.path(), "a"), pool(dir.path(), "b")],
        file_roots: vec!["/".into()],
        ..DaemonConfig::default()
    };
    f.reload(&cfg2);
    let e = f
        .spawn(request(dir.path(), "thin/b/vol"))
        .err()
        .expect("no uio device here");
    assert!(e.message.contains("uio0"), "{e}");
    assert!(dir.path().join("b").read_dir().unwrap().next().is_some());
    // A file backstore (file_roots now allow it) whose directory does not exist.
    let e = f
        .spawn(request(dir.path(), "file//nonexistent-dir/img"))
        .err()
        .expect("missing dir");
    assert_eq!(e.errno, libc::ENOENT, "{e}");
    f.flush_all().unwrap();
}

/// A device a rescan finds while the daemon runs had its ADDED event lost (a
/// burst overran the netlink socket): its thin volume is created as the event
/// would have, in a pool already open; at start-up adoption nothing is, and
/// a pool that is not open is never created by a rescan.
#[actix::test]
async fn a_rescan_creates_the_volume_of_a_lost_event_in_an_open_pool_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DaemonConfig {
        pools: vec![pool(dir.path(), "a"), pool(dir.path(), "b")],
        ..DaemonConfig::default()
    };
    let mut f = RealFactory::new(&cfg);
    // An ADDED event opens pool a (the device then fails: no /dev/uio0 here).
    let e = f
        .spawn(request(dir.path(), "thin/a/v1"))
        .err()
        .expect("no uio");
    assert!(e.message.contains("uio0"), "{e}");
    let adopted = |dev_config: &str, lost_event: bool| DeviceRequest {
        adopted: true,
        lost_event,
        ..request(dir.path(), dev_config)
    };
    // Start-up adoption of a device whose volume is missing: refused, not created.
    let e = f
        .spawn(adopted("thin/a/v2", false))
        .err()
        .expect("missing volume");
    assert!(e.message.contains("does not exist"), "{e}");
    // The same device found by a rescan: its volume is created, and the setup gets as
    // far as the ring (this test has none).
    let e = f.spawn(adopted("thin/a/v2", true)).err().expect("no ring");
    assert!(!e.message.contains("does not exist"), "{e}");
    let reg = f.registries().into_iter().next().expect("a registry");
    let names: Vec<String> = reg
        .held("a")
        .expect("pool a open")
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(names.contains(&"v2".to_string()), "{names:?}");
    // Pool b was never opened: a rescan does not create it.
    let e = f
        .spawn(adopted("thin/b/v3", true))
        .err()
        .expect("pool b not open");
    assert!(e.message.contains("pool"), "{e}");
    assert!(!dir.path().join("b").exists());
    f.flush_all().unwrap();
}
