//! The identity a device reports (VPD 80h unit serial, VPD 83h NAA
//! designator) comes from its volume or image, not from its dev_config:
//! the same dev_config on two hosts gives two identities, and a renamed
//! image or reopened pool keeps its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::device::sim_options;
use crate::util::device::workload::one;
use tcmud::backstore::{
    open_backstore, BackstoreHandle, DevConfig, OpenPolicy, PoolRegistry, PoolSpec,
    DEFAULT_BLOCK_SIZE,
};
use tcmud::device::{spawn_device_with, DeviceSpec};
use tcmud_core::pool::PoolConfig;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const MIB: u64 = 1 << 20;

fn registry(dir: &Path) -> PoolRegistry {
    PoolRegistry::new(vec![PoolSpec {
        name: "p".into(),
        path: dir.join("p"),
        config: PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 64 * MIB,
            low_water_pct: 90,
        },
        auto_create: true,
        options: Default::default(),
    }])
}

fn open(dev_config: &str, reg: &PoolRegistry, roots: &[PathBuf]) -> BackstoreHandle {
    let cfg = DevConfig::parse(dev_config).unwrap().unwrap();
    open_backstore(
        &cfg,
        8 * MIB,
        DEFAULT_BLOCK_SIZE,
        reg,
        &OpenPolicy {
            may_create: true,
            file_roots: roots,
        },
    )
    .unwrap()
}

/// VPD pages 80h and 83h of a device serving `bs` as `dev_config`.
fn vpd_80_83(bs: BackstoreHandle, dev_config: &str) -> (Vec<u8>, Vec<u8>) {
    let spec = DeviceSpec::simulated(dev_config, 8 * MIB);
    actix::System::new().block_on(async move {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let handle = spawn_device_with(spec, bs, sim_options(dev)).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut page = |code: u8| {
                // INQUIRY, EVPD=1, PAGE CODE, ALLOCATION LENGTH 255.
                let c = one(&mut sim, &[0x12, 0x01, code, 0, 255, 0], SimDir::In(255));
                assert_eq!(c.status, 0, "VPD {code:02x}: {:02x?}", c.sense.get(..14));
                let len = 4 + usize::from(u16::from_be_bytes([c.data_in[2], c.data_in[3]]));
                c.data_in[..len].to_vec()
            };
            let _ = tx.send((page(0x80), page(0x83)));
        });
        let pages = rx.await.unwrap();
        handle.stop().await;
        pages
    })
}

/// The 16-byte NAA designator of a VPD 83h page.
fn naa(p83: &[u8]) -> &[u8] {
    assert_eq!(&p83[4..8], &[0x01, 0x03, 0x00, 0x10], "binary, LU, NAA, 16");
    assert_eq!(p83[8] >> 4, 6, "NAA IEEE Registered Extended");
    assert_eq!(
        (u32::from(p83[8] & 0xF) << 20)
            | (u32::from(p83[9]) << 12)
            | (u32::from(p83[10]) << 4)
            | u32::from(p83[11] >> 4),
        0x001405,
        "IEEE company id"
    );
    &p83[8..24]
}

#[test]
fn the_same_dev_config_on_two_hosts_gives_two_identities() {
    let (h1, h2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (r1, r2) = (registry(h1.path()), registry(h2.path()));
    let (s1, p1) = vpd_80_83(open("thin/p/vol", &r1, &[]), "thin/p/vol");
    let (s2, p2) = vpd_80_83(open("thin/p/vol", &r2, &[]), "thin/p/vol");
    assert_eq!(s1.len(), 4 + 32, "32 hex digits");
    assert_ne!(s1, s2, "unit serials");
    assert_ne!(naa(&p1), naa(&p2), "NAA designators");
}

#[test]
fn a_thin_volume_keeps_its_identity_across_pool_reopen_and_differs_from_its_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let reg = registry(dir.path());
        let a = vpd_80_83(open("thin/p/a", &reg, &[]), "thin/p/a");
        let b = vpd_80_83(open("thin/p/b", &reg, &[]), "thin/p/b");
        assert_ne!(a.0, b.0);
        assert_ne!(naa(&a.1), naa(&b.1));
        a
    };
    // A new registry: the pool is opened again, as by a restarted daemon,
    // once the stopped devices' threads have let go of the first one.
    let reg = registry(dir.path());
    let cfg = DevConfig::parse("thin/p/a").unwrap().unwrap();
    let policy = OpenPolicy {
        may_create: false,
        file_roots: &[],
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let bs = loop {
        match open_backstore(&cfg, 8 * MIB, DEFAULT_BLOCK_SIZE, &reg, &policy) {
            Ok(bs) => break bs,
            Err(e) if e.to_string().contains("is held by process") => {
                assert!(Instant::now() < deadline, "the first pool stays open: {e}");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let again = vpd_80_83(bs, "thin/p/a");
    assert_eq!(again, first);
}

#[test]
fn a_file_image_keeps_its_identity_when_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let roots = [root.clone()];
    let reg = registry(dir.path());
    let old = format!("file/{}", root.join("a.img").display());
    let first = vpd_80_83(open(&old, &reg, &roots), &old);
    std::fs::rename(root.join("a.img"), root.join("b.img")).unwrap();
    let new = format!("file/{}", root.join("b.img").display());
    let renamed = vpd_80_83(open(&new, &reg, &roots), &new);
    assert_eq!(renamed.0, first.0, "unit serial");
    assert_eq!(naa(&renamed.1), naa(&first.1));
    let other = format!("file/{}", root.join("c.img").display());
    let c = vpd_80_83(open(&other, &reg, &roots), &other);
    assert_ne!(c.0, first.0);
}
