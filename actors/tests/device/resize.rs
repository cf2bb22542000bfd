//! A device on a thin pool volume: data goes through the actor to the pool,
//! and resize() grows the volume and raises CAPACITY DATA HAS CHANGED. An
//! image file grows the same way; a shrink of either is refused.

use std::time::{Duration, Instant};

use crate::util::device::workload::{clear_unit_attention, one, read10, write10};
use crate::util::device::{sim_options, sim_spec, BS};
use tcmud::backstore::{
    open_backstore, DevConfig, OpenPolicy, PoolRegistry, PoolSpec, DEFAULT_BLOCK_SIZE,
};
use tcmud::device::{spawn_device_with, RestartBudget};
use tcmud_core::pool::PoolConfig;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const MIB: u64 = 1 << 20;

fn read_capacity_blocks(sim: &mut KernelSim) -> u64 {
    let mut c = one(sim, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], SimDir::In(8));
    for _ in 0..3 {
        if c.status == 0 {
            break;
        }
        assert_eq!(c.sense[2] & 0xf, 6, "only a unit attention is retried");
        c = one(sim, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], SimDir::In(8));
    }
    assert_eq!(c.status, 0, "{:02x?}", c.sense.get(..14));
    u64::from(u32::from_be_bytes(c.data_in[..4].try_into().unwrap())) + 1
}

#[test]
fn thin_volume_device_resizes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = PoolRegistry::new(vec![PoolSpec {
        name: "p".into(),
        path: dir.path().join("p"),
        config: PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 64 * MIB,
            low_water_pct: 90,
        },
        auto_create: true,
        options: Default::default(),
    }]);
    let cfg = DevConfig::parse("thin/p/vol").unwrap().unwrap();
    let bs = open_backstore(
        &cfg,
        8 * MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &OpenPolicy {
            may_create: true,
            file_roots: &[],
        },
    )
    .unwrap();
    let backend = bs.backend();
    actix::System::new().block_on(async move {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let opts = sim_options(dev);
        let handle =
            spawn_device_with(sim_spec("vol", RestartBudget::default()), bs, opts).unwrap();
        let (resize_tx, resize_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let before = read_capacity_blocks(&mut sim);
            let data = vec![0x3cu8; 8 * BS];
            let w = one(&mut sim, &write10(100, 8), SimDir::Out(data.clone()));
            assert_eq!(w.status, 0);
            let r = one(&mut sim, &read10(100, 8), SimDir::In(8 * BS));
            assert_eq!(r.data_in, data);
            // No unit attention pending before the resize.
            clear_unit_attention(&mut sim);
            assert_eq!(one(&mut sim, &[0u8; 6], SimDir::None).status, 0);
            resize_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // The resize runs on an I/O thread: poll until the unit
            // attention shows up.
            let deadline = Instant::now() + Duration::from_secs(20);
            let ua = loop {
                let c = one(&mut sim, &[0u8; 6], SimDir::None);
                if c.status == 2 {
                    break c;
                }
                assert!(Instant::now() < deadline, "no unit attention after resize");
                std::thread::sleep(Duration::from_millis(5));
            };
            // Raised once, not twice.
            assert_eq!(one(&mut sim, &[0u8; 6], SimDir::None).status, 0);
            let after = read_capacity_blocks(&mut sim);
            let _ = done_tx.send((before, ua, after, sim.broken().map(str::to_owned)));
        });
        resize_rx.await.unwrap();
        handle.resize(16 * MIB).await.unwrap();
        go_tx.send(()).unwrap();
        // Await (not join): the device actor runs on this thread.
        let (before, ua, after, broken) = done_rx.await.unwrap();
        assert_eq!(broken, None);
        assert_eq!(before, 8 * MIB / BS as u64);
        assert_eq!(ua.sense[2] & 0xf, 6, "UNIT ATTENTION");
        assert_eq!(
            (ua.sense[12], ua.sense[13]),
            (0x2a, 0x09),
            "CAPACITY DATA HAS CHANGED"
        );
        assert_eq!(after, 16 * MIB / BS as u64);
        handle.stop().await;
    });
    // The data went to the pool volume.
    let mut back = vec![0u8; 8 * BS];
    backend.read(100, &mut back).unwrap();
    assert_eq!(back, vec![0x3cu8; 8 * BS]);
}

/// A file/ backstore grows online: resize() resolves once the image file
/// has the new length, READ CAPACITY says so after one CAPACITY DATA HAS
/// CHANGED; a shrink is refused with the file and capacity unchanged.
#[test]
fn image_file_device_grows_and_refuses_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let img = root.join("disk.img");
    let reg = PoolRegistry::new(vec![]);
    let cfg = DevConfig::parse(&format!("file/{}", img.display()))
        .unwrap()
        .unwrap();
    let bs = open_backstore(
        &cfg,
        8 * MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &OpenPolicy {
            may_create: true,
            file_roots: std::slice::from_ref(&root),
        },
    )
    .unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 * MIB);
    let img2 = img.clone();
    actix::System::new().block_on(async move {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let opts = sim_options(dev);
        let handle =
            spawn_device_with(sim_spec("img", RestartBudget::default()), bs, opts).unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let before = read_capacity_blocks(&mut sim);
            let _ = ready_tx.send(before);
            go_rx.recv().unwrap();
            // The grow is done: its unit attention is queued already.
            let ua = one(&mut sim, &[0u8; 6], SimDir::None);
            assert_eq!(one(&mut sim, &[0u8; 6], SimDir::None).status, 0);
            let after = read_capacity_blocks(&mut sim);
            // Blocks past the old end are served.
            let data = vec![0x5au8; 8 * BS];
            let last = usize::try_from(after - 8).expect("a test disk's LBA");
            assert_eq!(
                one(&mut sim, &write10(last, 8), SimDir::Out(data.clone())).status,
                0
            );
            let r = one(&mut sim, &read10(last, 8), SimDir::In(8 * BS));
            assert_eq!(r.data_in, data);
            go_rx.recv().unwrap();
            let after_shrink = read_capacity_blocks(&mut sim);
            let _ = done_tx.send((ua, after, after_shrink, sim.broken().map(str::to_owned)));
        });
        let before = ready_rx.await.unwrap();
        assert_eq!(before, 8 * MIB / BS as u64);
        handle.resize(16 * MIB).await.unwrap();
        assert_eq!(std::fs::metadata(&img2).unwrap().len(), 16 * MIB);
        go_tx.send(()).unwrap();
        let err = handle.resize(4 * MIB).await.unwrap_err();
        assert!(err.to_string().contains("shrinking"), "{err}");
        assert_eq!(std::fs::metadata(&img2).unwrap().len(), 16 * MIB);
        go_tx.send(()).unwrap();
        let (ua, after, after_shrink, broken) = done_rx.await.unwrap();
        assert_eq!(broken, None);
        assert_eq!(ua.status, 2);
        assert_eq!(ua.sense[2] & 0xf, 6, "UNIT ATTENTION");
        assert_eq!((ua.sense[12], ua.sense[13]), (0x2a, 0x09));
        assert_eq!(after, 16 * MIB / BS as u64);
        assert_eq!(after_shrink, after);
        handle.stop().await;
    });
}
