//! One device's drain never holds up another device's events: a REMOVED whose
//! stop hangs leaves the supervisor answering the other devices, listing and
//! reloading; the events of the draining device itself wait, in order, and are
//! handled once its stop ended.

use crate::util::supervisor::*;
use actix::Actor;
use std::time::Duration;
use tcmud::supervisor::{FakeSource, ListDevices, RawEvent, Reload, Supervisor};
use tcmud_core::netlink::{cmd, NlCmd, Reconfig};

const A: &str = "tcm-user/1/a/thin/default/a";
const A2: &str = "tcm-user/1/a2/thin/default/a2";
const B: &str = "tcm-user/1/b/thin/default/b";

/// Sends `msg`; fails the test if the supervisor does not take it within 10 s
/// (a hang detector, not a timing assertion).
async fn send<M>(addr: &actix::Addr<Supervisor>, msg: M) -> M::Result
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    Supervisor: actix::Handler<M>,
{
    tokio::time::timeout(Duration::from_secs(10), addr.send(msg))
        .await
        .expect("the supervisor is blocked")
        .unwrap()
}

#[actix::test]
async fn a_hung_drain_blocks_only_its_own_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 1, A, 8 << 20, 512);
    add_kernel_device(&cfg, 2, B, 8 << 20, 512);
    let (f, log) = factory();
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    f.stop_gates.borrow_mut().insert(1, gate);
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 2);

    // Device 1's drain hangs.
    send(&addr, RawEvent(event(NlCmd::Removed, A, 1, 10, None))).await;
    // Device 2 is served meanwhile: its RECONFIG is answered.
    let resize = Some(Reconfig::DevSize(16 << 20));
    send(&addr, RawEvent(event(NlCmd::Reconfig, B, 2, 20, resize))).await;
    assert_eq!(
        wait_replies(&fake, 1).await,
        vec![(cmd::RECONFIG_DEVICE_DONE, 0, 20)]
    );
    assert_eq!(send(&addr, ListDevices).await, vec![2]);
    send(&addr, Reload(cfg.clone())).await;
    // Minor 1 is reused while its old device still drains: this waits.
    set_uio_name(&cfg, 1, A2);
    send(&addr, RawEvent(event(NlCmd::Added, A2, 1, 11, None))).await;
    assert_eq!(
        spawned_minors(&log),
        vec![1, 2],
        "not re-opened during the drain"
    );
    assert_eq!(fake.sent().len(), 1);

    // The drain ends: REMOVED answered, then the waiting ADDED handled.
    release.send(()).unwrap();
    let replies = wait_replies(&fake, 3).await;
    assert_eq!(
        replies,
        vec![
            (cmd::RECONFIG_DEVICE_DONE, 0, 20),
            (cmd::REMOVED_DEVICE_DONE, 0, 10),
            (cmd::ADDED_DEVICE_DONE, 0, 11),
        ]
    );
    assert_eq!(spawned_minors(&log), vec![1, 2, 1]);
    assert_eq!(send(&addr, ListDevices).await, vec![1, 2]);
}

/// Shutdown waits for a drain already in progress before flushing the pools.
#[actix::test]
async fn shutdown_waits_for_a_drain_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 1, A, 8 << 20, 512);
    add_kernel_device(&cfg, 2, B, 8 << 20, 512);
    let (f, log) = factory();
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    f.stop_gates.borrow_mut().insert(1, gate);
    let (_fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    send(&addr, RawEvent(event(NlCmd::Removed, A, 1, 10, None))).await;
    let shutdown = actix::spawn(addr.send(tcmud::supervisor::Shutdown));
    // Device 2 is stopped by the shutdown while device 1 still drains.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.borrow().contains(&Op::Stop(2)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !log.borrow().contains(&Op::Flush),
        "flushed before the drain ended"
    );
    release.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown hangs")
        .unwrap()
        .unwrap();
    let log = log.borrow();
    let stop1 = log.iter().position(|o| *o == Op::Stop(1)).unwrap();
    let flush = log.iter().position(|o| *o == Op::Flush).unwrap();
    assert!(stop1 < flush, "{log:?}");
}
