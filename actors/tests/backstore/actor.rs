//! Backstore actors: one per open volume, shared by the devices serving it;
//! snapshot, resize and usage through it while it is served, delete
//! refused while served, the pool's low-water crossing reported once, and
//! the backstore closed (the volume deletable) when the last device leaves.

use std::path::Path;
use std::sync::Arc;

use actix::{Actor, Context, Handler};
use tcmud::backstore::actor::{CloneTo, Delete, Snapshot, Usage};
use tcmud::backstore::{
    BackstoreError, BackstoreEvent, Backstores, DevConfig, DevOptions, OpenRequest, PoolRegistry,
    PoolSpec,
};
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};
use tokio::sync::mpsc;

const MIB: u64 = 1 << 20;
const CHUNK: u64 = CHUNK_U32 as u64;
const CHUNK_U32: u32 = 64 << 10;

/// A pool of `capacity` bytes (64 KiB chunks) holding volume `vol` of 8 MiB.
fn pool(dir: &Path, capacity: u64, low_water_pct: u8) -> Arc<PoolRegistry> {
    let cfg = PoolConfig {
        chunk_size: CHUNK_U32,
        capacity_bytes: capacity,
        low_water_pct,
    };
    let p = Pool::create(&dir.join("pool"), &cfg).unwrap();
    p.create_volume("vol", 8 * MIB, 512).unwrap();
    p.close().unwrap();
    Arc::new(PoolRegistry::new(vec![PoolSpec {
        name: "p".into(),
        path: dir.join("pool"),
        config: cfg,
        auto_create: false,
        options: PoolOptions::default(),
    }]))
}

fn vol() -> DevConfig {
    DevConfig::Thin {
        pool: "p".into(),
        volume: "vol".into(),
    }
}

fn request(reg: &Arc<PoolRegistry>, minor: u32) -> OpenRequest {
    OpenRequest {
        config: vol(),
        options: DevOptions::default(),
        size_bytes: 8 * MIB,
        block_size: 512,
        registry: Arc::clone(reg),
        may_create: false,
        file_roots: Vec::new(),
        minor: Some(minor),
    }
}

/// Forwards the backstores' events to a channel.
struct Events(mpsc::UnboundedSender<BackstoreEvent>);

impl Actor for Events {
    type Context = Context<Self>;
}

impl Handler<BackstoreEvent> for Events {
    type Result = ();
    fn handle(&mut self, ev: BackstoreEvent, _: &mut Context<Self>) {
        let _ = self.0.send(ev);
    }
}

fn subscribe(dir: &Backstores) -> mpsc::UnboundedReceiver<BackstoreEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    dir.subscribe(Events(tx).start().recipient());
    rx
}

#[actix::test]
async fn open_snapshot_resize_close_and_delete_refused_while_served() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = pool(tmp.path(), 64 * MIB, 90);
    let dir = Backstores::new();
    let mut events = subscribe(&dir);

    let a = dir.open(request(&reg, 1)).await.unwrap();
    let b = dir.open(request(&reg, 2)).await.unwrap();
    // One actor for the volume, both devices known to it.
    assert_eq!(dir.open_keys(), vec![vol()]);
    let actor = dir.get(&vol()).unwrap();
    assert_eq!(a.actor(), &actor);
    let u = actor.send(Usage).await.unwrap().unwrap();
    assert_eq!((u.users, u.size_bytes), (vec![1, 2], 8 * MIB));

    // Data written through device 1's handle is in the snapshot taken
    // through the actor; later writes are not.
    let block = [0xa5u8; 512];
    a.handle().backend().write(16, &block, false).unwrap();
    actor
        .send(Snapshot {
            name: "snap".into(),
        })
        .await
        .unwrap()
        .unwrap();
    b.handle().backend().write(16, &[0x5a; 512], false).unwrap();
    let p = reg.held("p").unwrap();
    let snap = p.open_volume("snap").unwrap();
    let mut got = [0u8; 512];
    tcmud_core::backend::BlockBackend::read(snap.as_ref(), 16, &mut got).unwrap();
    assert_eq!(got, block);
    drop(snap);

    // A clone is only made from a snapshot: the volume's actor says so.
    let e = actor
        .send(CloneTo {
            new_volume: "c".into(),
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("not a snapshot"), "{e}");

    // Resize through device 1: both devices' backends see the new size;
    // a shrink is refused.
    a.resize(16 * MIB).await.unwrap();
    let caps = b.handle().backend().caps();
    assert_eq!(caps.num_blocks * u64::from(caps.block_size), 16 * MIB);
    assert!(matches!(
        a.resize(8 * MIB).await,
        Err(BackstoreError::Shrink { .. })
    ));

    // Delete is refused while served, naming the devices.
    let e = actor.send(Delete).await.unwrap().unwrap_err();
    assert!(
        matches!(&e, BackstoreError::Served { users, .. } if users == &[1, 2]),
        "{e}"
    );
    assert!(e.to_string().contains("/dev/uio1, /dev/uio2"), "{e}");
    assert!(p.list_volumes().unwrap().iter().any(|v| v.name == "vol"));

    // The last device to leave closes the backstore: the volume is then
    // no longer open, so the pool deletes it.
    drop(a);
    let u = actor.send(Usage).await.unwrap().unwrap();
    assert_eq!(u.users, vec![2]);
    drop(b);
    assert_eq!(
        events.recv().await,
        Some(BackstoreEvent::Closed { backstore: vol() })
    );
    assert!(dir.get(&vol()).is_none());
    assert!(actor.send(Usage).await.is_err(), "the actor stopped");
    p.delete_volume("vol").unwrap();
}

#[actix::test]
async fn the_low_water_crossing_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    // 16 chunks, low water at 50 %: the 8th allocated chunk crosses it.
    let reg = pool(tmp.path(), 16 * CHUNK, 50);
    let dir = Backstores::new();
    let mut events = subscribe(&dir);
    let a = dir.open(request(&reg, 4)).await.unwrap();
    let backend = a.handle().backend();
    let chunk = vec![1u8; usize::try_from(CHUNK).unwrap()];
    let blocks_per_chunk = CHUNK / 512;
    for c in 0..12u64 {
        backend.write(c * blocks_per_chunk, &chunk, false).unwrap();
        // Let the actor look between the writes too (its own poll).
        tokio::task::yield_now().await;
    }
    // Its operations look at the crossings when they end: after the first
    // snapshot the crossing has been reported, the second must not repeat it.
    for name in ["s1", "s2"] {
        a.actor()
            .send(Snapshot { name: name.into() })
            .await
            .unwrap()
            .unwrap();
    }
    drop(a);
    let mut seen = Vec::new();
    while let Some(ev) = events.recv().await {
        let closed = matches!(ev, BackstoreEvent::Closed { .. });
        seen.push(ev);
        if closed {
            break;
        }
    }
    let low: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e, BackstoreEvent::LowWater { .. }))
        .collect();
    assert_eq!(low.len(), 1, "{seen:?}");
    let BackstoreEvent::LowWater {
        backstore,
        allocated_bytes,
        capacity_bytes,
        low_water_pct,
    } = low[0]
    else {
        unreachable!()
    };
    assert_eq!(backstore, &vol());
    assert_eq!((*capacity_bytes, *low_water_pct), (16 * CHUNK, 50));
    assert!(*allocated_bytes >= 8 * CHUNK, "{allocated_bytes}");
}

#[actix::test]
async fn a_failed_open_leaves_no_actor_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = pool(tmp.path(), 64 * MIB, 90);
    let dir = Backstores::new();
    let mut req = request(&reg, 1);
    req.config = DevConfig::Thin {
        pool: "p".into(),
        volume: "missing".into(),
    };
    let e = dir.open(req.clone()).await.unwrap_err();
    assert!(matches!(e, BackstoreError::VolumeMissing { .. }), "{e}");
    // The actor closed before it answered.
    assert!(dir.get(&req.config).is_none());
    assert!(dir.open_keys().is_empty());
}

#[actix::test]
async fn an_open_does_not_wait_behind_a_hung_backstore() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        chunk_size: CHUNK_U32,
        capacity_bytes: 64 * MIB,
        low_water_pct: 90,
    };
    let p = Pool::create(&tmp.path().join("pool"), &cfg).unwrap();
    p.create_volume("vol", 8 * MIB, 512).unwrap();
    p.close().unwrap();
    // One I/O thread, held by another backstore's job that never returns
    // until the test lets it.
    let io = tcmud::backstore::SharedIo::new(1, 1).unwrap();
    let reg = Arc::new(PoolRegistry::with_io(
        vec![PoolSpec {
            name: "p".into(),
            path: tmp.path().join("pool"),
            config: cfg,
            auto_create: false,
            options: PoolOptions::default(),
        }],
        io.clone(),
    ));
    let hung = io.lane();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    assert!(hung.spawn(move || {
        entered_tx.send(()).unwrap();
        let _ = wait.recv();
    }));
    entered.recv().unwrap();
    let dir = Backstores::new();
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        dir.open(request(&reg, 1)),
    )
    .await;
    release.send(()).unwrap();
    let a = opened
        .expect("the open waited for the hung I/O thread")
        .unwrap();
    assert_eq!(a.actor().send(Usage).await.unwrap().unwrap().users, vec![1]);
}

/// The supervisor opens backstores with `open_blocking` from inside its
/// actor, on a thread that runs a tokio runtime: many opens in one poll of
/// that task (a burst of ADDED events) must all be answered, beyond the 128
/// units of tokio's cooperative budget per poll.
#[test]
fn open_blocking_inside_a_runtime_task_answers_past_the_cooperative_budget() {
    const OPENS: u32 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let reg = pool(tmp.path(), 64 * MIB, 90);
    let (tx, rx) = std::sync::mpsc::channel();
    // On a thread of its own: a stall must fail the test, not hang it.
    std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let dir = Backstores::new();
            let mut held = Vec::new();
            for minor in 0..OPENS {
                match dir.open_blocking(request(&reg, minor)) {
                    Ok(a) => held.push(a),
                    Err(e) => panic!("open {minor}: {e}"),
                }
                let _ = tx.send(minor + 1);
            }
            assert_eq!(held.len(), OPENS as usize);
        });
    });
    let mut answered = 0;
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(n) => answered = n,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
        }
    }
    assert_eq!(
        answered, OPENS,
        "open_blocking stopped answering after {answered} opens in one task poll"
    );
}
