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
