//! Shared by the RBD device tests: the test cluster (tests/ceph/cluster.sh,
//! named by TCMUD_TEST_CEPH_CONF; TCMUD_TEST_CEPH_DIR for the outage tests),
//! fresh images, SCSI CDBs. Without a cluster the tests fail, naming the
//! script: the `rbd` feature means "test against Ceph".

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tcmud::backstore::rbd_api::{Cluster, ConnectOptions, Image, IoCtx};
use tcmud::backstore::{open_backstore_with, BackstoreHandle, DevConfig, OpenPolicy, PoolRegistry};

/// The test cluster, used by the RBD tests of this binary at the same
/// time, except while an outage test stops its only OSD.
static CLUSTER: RwLock<()> = RwLock::new(());

/// Held by an RBD test while it uses the test cluster (shared with the
/// other RBD tests, not with an outage).
pub fn cluster() -> RwLockReadGuard<'static, ()> {
    CLUSTER.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by an outage test: no other RBD test runs until it is over.
pub fn cluster_outage() -> RwLockWriteGuard<'static, ()> {
    CLUSTER.write().unwrap_or_else(PoisonError::into_inner)
}

/// The test cluster's ceph.conf.
pub fn conf() -> PathBuf {
    std::env::var_os("TCMUD_TEST_CEPH_CONF")
        .expect(
            "TCMUD_TEST_CEPH_CONF unset: these tests need a Ceph cluster: \
             tests/ceph/cluster.sh start DIR, then export what `cluster.sh env DIR` prints \
             (tests/run-all.sh does both)",
        )
        .into()
}

/// The test cluster's directory (for cluster.sh kill-osd/start-osd).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("TCMUD_TEST_CEPH_DIR")
        .expect("TCMUD_TEST_CEPH_DIR unset (see `tests/ceph/cluster.sh env DIR`)")
        .into()
}

/// Runs `tests/ceph/cluster.sh CMD DIR` on the test cluster (`kill-osd`,
/// `start-osd`: an outage test holds [`cluster_outage`]).
pub fn cluster_sh(cmd: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/ceph/cluster.sh");
    let st = std::process::Command::new(script)
        .arg(cmd)
        .arg(cluster_dir())
        .status()
        .expect("run cluster.sh");
    assert!(st.success(), "cluster.sh {cmd} failed");
}

/// Pool `rbd` of the test cluster, through a connection of its own.
pub fn pool() -> Arc<IoCtx> {
    let c = Cluster::connect(&ConnectOptions {
        conf: Some(conf()),
        ..ConnectOptions::default()
    })
    .expect("connect to the test cluster");
    c.ioctx("rbd").expect("pool rbd")
}

/// Creates an image of `bytes` in pool `rbd` under a name no run used.
pub fn create_image(prefix: &str, bytes: u64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{prefix}-{}-{t}", std::process::id());
    pool().create_image(&name, bytes).expect("create image");
    name
}

/// Opens the image's device backstore the way the daemon does, from a
/// `dev_config` (`rbd/rbd/<name>;conf=...` plus `extra` options).
pub fn open(name: &str, extra: &str, bytes: u64) -> BackstoreHandle {
    let dc = format!("rbd/rbd/{name};conf={}{extra}", conf().display());
    let (cfg, opts) = DevConfig::parse_with_options(&dc).unwrap().unwrap();
    open_backstore_with(
        &cfg,
        &opts,
        bytes,
        512,
        &PoolRegistry::new(Vec::new()),
        &OpenPolicy {
            may_create: false,
            file_roots: &[],
        },
    )
    .expect("open rbd backstore")
}

/// Reads `len` bytes at `off` through a separate connection.
pub fn read_back(name: &str, off: u64, len: usize) -> Vec<u8> {
    let img = Image::open(pool(), name, None, true).expect("open image");
    let d = Image::wait(|done| img.aio_read(off, len, done)).expect("read");
    d.result.expect("read result");
    d.buf
}

/// COMPARE AND WRITE (16 bytes) of `blocks` at `lba`.
pub fn caw(lba: u64, blocks: u8) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

/// WRITE(16) of `blocks` at `lba`, FUA when asked.
pub fn write16(lba: u64, blocks: u32, fua: bool) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x8a;
    c[1] = if fua { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ(16) of `blocks` at `lba`.
pub fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = write16(lba, blocks, false);
    c[0] = 0x88;
    c
}

/// GET LBA STATUS at `lba` with a 4 KiB allocation length.
pub fn get_lba_status(lba: u64) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x9e; // SERVICE ACTION IN(16)
    c[1] = 0x12; // GET LBA STATUS
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&4096u32.to_be_bytes());
    c
}

/// The first descriptor of GET LBA STATUS data: (lba, blocks, provisioning
/// status: 0 mapped, 1 deallocated).
pub fn first_status(data: &[u8]) -> (u64, u32, u8) {
    let d = &data[8..24];
    (
        u64::from_be_bytes(d[0..8].try_into().unwrap()),
        u32::from_be_bytes(d[8..12].try_into().unwrap()),
        d[12] & 0x0f,
    )
}

/// UNMAP of one range: the CDB and its parameter list.
pub fn unmap(lba: u64, blocks: u32) -> (Vec<u8>, Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[0..2].copy_from_slice(&22u16.to_be_bytes());
    p[2..4].copy_from_slice(&16u16.to_be_bytes());
    p[8..16].copy_from_slice(&lba.to_be_bytes());
    p[16..20].copy_from_slice(&blocks.to_be_bytes());
    let mut c = vec![0u8; 10];
    c[0] = 0x42;
    c[7..9].copy_from_slice(&24u16.to_be_bytes());
    (c, p)
}

/// Sense key, ASC and ASCQ of fixed-format sense data.
pub fn sense(s: &[u8]) -> (u8, u8, u8) {
    (
        s.get(2).copied().unwrap_or(0) & 0x0f,
        s.get(12).copied().unwrap_or(0),
        s.get(13).copied().unwrap_or(0),
    )
}

/// WRITE SAME(16) of `blocks` at `lba`, with the UNMAP / NDOB bits.
pub fn write_same16(lba: u64, blocks: u32, unmap: bool, ndob: bool) -> Vec<u8> {
    let mut c = write16(lba, blocks, false);
    c[0] = 0x93;
    c[1] = u8::from(unmap) << 3 | u8::from(ndob);
    c
}

/// Runs the `ceph` or `rbd` CLI against the test cluster; its stdout.
pub fn ceph_cli(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(tool)
        .arg("-c")
        .arg(conf())
        .args(args)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The addresses of the image's watchers (its open clients), from
/// `rbd status`.
pub fn watchers(name: &str) -> Vec<String> {
    let out = ceph_cli(
        "rbd",
        &["status", &format!("rbd/{name}"), "--format", "json"],
    )
    .expect("rbd status");
    // {"watchers":[{"address":"127.0.0.1:0/123","client":4123,"cookie":...}]}
    out.split("\"address\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Blocklists every current watcher of the image (what a peer taking the
/// image's exclusive lock does to a dead owner); their addresses.
pub fn blocklist_watchers(name: &str) -> Vec<String> {
    let w = watchers(name);
    for a in &w {
        ceph_cli("ceph", &["osd", "blocklist", "add", a]).expect("ceph osd blocklist add");
    }
    w
}
