//! Transfer limits come from the kernel device: configfs `hw_max_sectors`
//! (in `hw_block_size` units) and `optimal_sectors`, capped by what the
//! ring can carry; read at open and again on RECONFIG. VPD B0h advertises
//! them; READ/WRITE longer than the ring carries get ILLEGAL REQUEST,
//! INVALID FIELD IN CDB.

use std::path::Path;
use std::sync::Arc;

use crate::util::device::workload::{clear_unit_attention, one, read10, write10};
use crate::util::device::{sim_options, sim_spec, BS, BS_U32};
use tcmud::backstore::{BackstoreHandle, BackstoreKind, DevOptions};
use tcmud::device::{spawn_device_with, DeviceHandle, RestartBudget};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BlockBackend};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

/// MAXIMUM TRANSFER LENGTH and OPTIMAL TRANSFER LENGTH from VPD B0h.
fn block_limits(sim: &mut KernelSim) -> (u32, u32) {
    // INQUIRY, EVPD=1, page B0h, allocation length 64.
    let c = one(sim, &[0x12, 0x01, 0xB0, 0, 64, 0], SimDir::In(64));
    assert_eq!(c.status, 0, "VPD B0h: {:?}", c.sense);
    let be32 = |at: usize| u32::from_be_bytes(c.data_in[at..at + 4].try_into().unwrap());
    (be32(8), be32(12))
}

/// Sense key, ASC, ASCQ of a CHECK CONDITION.
fn sense(c: &SimCompletion) -> (u8, u8, u8) {
    assert_eq!(c.status, 2, "expected CHECK CONDITION");
    (c.sense[2] & 0x0F, c.sense[12], c.sense[13])
}

fn attrib(dir: &Path, name: &str, value: &str) {
    std::fs::create_dir_all(dir.join("attrib")).unwrap();
    std::fs::write(dir.join("attrib").join(name), format!("{value}\n")).unwrap();
}

/// Runs `f` against a device whose configfs directory is `configfs` (if
/// any), over a simulated ring shaped by `cfg`, on a 4096-block disk.
fn with_device<R: Send + 'static>(
    configfs: Option<&Path>,
    cfg: SimConfig,
    f: impl FnOnce(&mut KernelSim, &DeviceHandle) -> R + Send + 'static,
) -> R {
    let caps = MemBackend::new(BS_U32, 4096).caps();
    with_device_opts(configfs, cfg, caps, DevOptions::default(), f)
}

/// [`with_device`] over a backend with `caps`, served with the
/// `dev_config` options `opts`.
fn with_device_opts<R: Send + 'static>(
    configfs: Option<&Path>,
    cfg: SimConfig,
    caps: BackendCaps,
    opts: DevOptions,
    f: impl FnOnce(&mut KernelSim, &DeviceHandle) -> R + Send + 'static,
) -> R {
    let mut spec = sim_spec("limits", RestartBudget::default());
    spec.configfs_dir = configfs.map(Path::to_path_buf);
    let backend: Arc<dyn BlockBackend> = Arc::new(MemBackend::with_caps(caps));
    let bs = BackstoreHandle::with_options(
        backend,
        BackstoreKind::Other {
            name: "memory".into(),
        },
        2,
        None,
        opts,
    )
    .unwrap();
    actix::System::new().block_on(async move {
        let (mut sim, simdev) = KernelSim::new(cfg).unwrap();
        let handle = Arc::new(spawn_device_with(spec, bs, sim_options(simdev)).unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let h = Arc::clone(&handle);
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let _ = tx.send(f(&mut sim, &h));
        });
        let r = rx.await.unwrap();
        if let Ok(h) = Arc::try_unwrap(handle) {
            h.stop().await;
        }
        r
    })
}

#[test]
fn default_attributes_advertise_128_blocks() {
    let t = tempfile::tempdir().unwrap();
    attrib(t.path(), "hw_max_sectors", "128");
    attrib(t.path(), "hw_block_size", "512");
    let (limits, at_max, over, write_over, beyond_ring) =
        with_device(Some(t.path()), SimConfig::default(), |sim, _| {
            let limits = block_limits(sim);
            let at_max = one(sim, &read10(0, 128), SimDir::In(128 * BS));
            // Longer than advertised but within what the ring carries (1 MiB
            // data area): served, as the kernel's own backstores serve it.
            let over = one(sim, &read10(0, 129), SimDir::In(129 * BS));
            let write_over = one(sim, &write10(0, 129), SimDir::Out(vec![7; 129 * BS]));
            // More than the ring can carry: refused.
            let beyond_ring = one(sim, &read10(0, 2049), SimDir::In(BS));
            (limits, at_max, over, write_over, beyond_ring)
        });
    assert_eq!(limits, (128, 128), "MAXIMUM / OPTIMAL TRANSFER LENGTH");
    assert_eq!(at_max.status, 0);
    assert_eq!(at_max.data_in.len(), 128 * BS);
    assert_eq!((over.status, over.data_in.len()), (0, 129 * BS));
    assert_eq!(write_over.status, 0);
    // ILLEGAL REQUEST, INVALID FIELD IN CDB.
    assert_eq!(sense(&beyond_ring), (0x5, 0x24, 0x00));
}

#[test]
fn hw_max_sectors_counts_hw_blocks_and_optimal_sectors_is_honoured() {
    let t = tempfile::tempdir().unwrap();
    // 64 sectors of 4096 bytes = 512 blocks of 512 bytes; the disk's
    // blocks are 512 bytes, as the kernel's block_size may differ from
    // hw_block_size.
    attrib(t.path(), "hw_max_sectors", "64");
    attrib(t.path(), "hw_block_size", "4096");
    attrib(t.path(), "optimal_sectors", "32");
    let limits = with_device(Some(t.path()), SimConfig::default(), |sim, _| {
        block_limits(sim)
    });
    assert_eq!(limits, (512, 32));
}

#[test]
fn the_data_area_caps_the_limit() {
    let t = tempfile::tempdir().unwrap();
    attrib(t.path(), "hw_max_sectors", "65536");
    attrib(t.path(), "hw_block_size", "512");
    let cfg = SimConfig {
        data_size: 256 * 1024,
        ..SimConfig::default()
    };
    let (limits, over) = with_device(Some(t.path()), cfg, |sim, _| {
        let limits = block_limits(sim);
        // 513 blocks would not fit the data area: the initiator's kernel
        // would fail it; a READ(10) of 513 blocks with a small buffer
        // must still be refused by the length check.
        let over = one(sim, &read10(0, 513), SimDir::In(BS));
        (limits, over)
    });
    assert_eq!(limits.0, 512, "256 KiB data area / 512-byte blocks");
    assert_eq!(sense(&over), (0x5, 0x24, 0x00));
}

#[test]
fn max_write_same_len_caps_write_same() {
    let t = tempfile::tempdir().unwrap();
    attrib(t.path(), "hw_max_sectors", "128");
    attrib(t.path(), "hw_block_size", "512");
    attrib(t.path(), "max_write_same_len", "1024");
    let (mwsl, at_max, over) = with_device(Some(t.path()), SimConfig::default(), |sim, _| {
        let c = one(sim, &[0x12, 0x01, 0xB0, 0, 64, 0], SimDir::In(64));
        let mwsl = u64::from_be_bytes(c.data_in[36..44].try_into().unwrap());
        // WRITE SAME(16), UNMAP, of 1024 and of 1025 blocks at LBA 0.
        let ws = |n: u32| {
            let mut cdb = [0u8; 16];
            cdb[0] = 0x93;
            cdb[1] = 0x08; // UNMAP
            cdb[10..14].copy_from_slice(&n.to_be_bytes()); // NUMBER OF LOGICAL BLOCKS
            cdb
        };
        let at_max = one(sim, &ws(1024), SimDir::Out(vec![0; BS]));
        let over = one(sim, &ws(1025), SimDir::Out(vec![0; BS]));
        (mwsl, at_max, over)
    });
    assert_eq!(mwsl, 1024, "MAXIMUM WRITE SAME LENGTH");
    assert_eq!(at_max.status, 0);
    assert_eq!(sense(&over), (0x5, 0x24, 0x00));
}

#[test]
fn limits_are_read_again_on_reconfig() {
    let t = tempfile::tempdir().unwrap();
    attrib(t.path(), "hw_max_sectors", "128");
    attrib(t.path(), "hw_block_size", "512");
    let dir = t.path().to_path_buf();
    let (before, after) = with_device(Some(t.path()), SimConfig::default(), move |sim, h| {
        let before = block_limits(sim);
        attrib(&dir, "hw_max_sectors", "1024");
        // A RECONFIG (here: the write cache) makes the device read them again.
        h.set_write_cache(false);
        let after = block_limits(sim);
        (before, after)
    });
    assert_eq!(before.0, 128);
    assert_eq!(after.0, 1024);
}

/// `;lbppbe=3` in the dev_config: READ CAPACITY(16) reports 8 logical
/// blocks per physical block, VPD B0h an OPTIMAL TRANSFER LENGTH
/// GRANULARITY of 8 and an OPTIMAL UNMAP GRANULARITY rounded up to whole
/// physical blocks (the backend's 1 becomes 8).
#[test]
fn lbppbe_option_reaches_read_capacity_and_block_limits() {
    let caps = BackendCaps {
        unmap_granularity: 1,
        ..MemBackend::new(BS_U32, 4096).caps()
    };
    let opts = DevOptions {
        lbppbe: 3,
        ..DevOptions::default()
    };
    let (rc16, b0) = with_device_opts(None, SimConfig::default(), caps, opts, |sim, _| {
        // SERVICE ACTION IN(16) / READ CAPACITY(16), ALLOCATION LENGTH 32.
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x10;
        cdb[13] = 32;
        let rc = one(sim, &cdb, SimDir::In(32));
        assert_eq!(rc.status, 0, "{:?}", rc.sense);
        let b0 = one(sim, &[0x12, 0x01, 0xB0, 0, 64, 0], SimDir::In(64));
        assert_eq!(b0.status, 0, "{:?}", b0.sense);
        (rc.data_in, b0.data_in)
    });
    assert_eq!(
        rc16[13] & 0x0F,
        3,
        "LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT"
    );
    assert_eq!(&b0[6..8], &[0, 8], "OPTIMAL TRANSFER LENGTH GRANULARITY");
    assert_eq!(&b0[28..32], &[0, 0, 0, 8], "OPTIMAL UNMAP GRANULARITY");
}
