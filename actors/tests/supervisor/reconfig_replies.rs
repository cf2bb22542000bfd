//! RECONFIG replies carry the real result: a resize is answered once the
//! backstore has the new size (or with why it refused), a dev_config change
//! opens the new backstore before closing the old device and, when it cannot,
//! keeps the old one served and answers with the error. REMOVED is answered
//! once the device is closed.

use crate::util::supervisor::*;
use actix::Actor;
use std::time::Duration;
use tcmud::supervisor::{FakeSource, ListDevices, RawEvent, Supervisor};
use tcmud_core::netlink::{cmd, NlCmd, Reconfig};

const A: &str = "tcm-user/1/a/thin/default/a";

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
async fn resize_is_answered_after_the_backstore_resized_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 1, A, 8 << 20, 512);
    let (f, log) = factory();
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    f.resize_gates.borrow_mut().insert(1, gate);
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 1);

    let grow = Some(Reconfig::DevSize(16 << 20));
    send(&addr, RawEvent(event(NlCmd::Reconfig, A, 1, 10, grow))).await;
    // The supervisor answers other messages, but not this RECONFIG yet: the
    // backstore has not resized.
    assert_eq!(send(&addr, ListDevices).await, vec![1]);
    assert!(fake.sent().is_empty(), "answered before the resize ended");
    assert!(!log.borrow().contains(&Op::Resize(1, 16 << 20)));
    release.send(()).unwrap();
    assert_eq!(
        wait_replies(&fake, 1).await,
        vec![(cmd::RECONFIG_DEVICE_DONE, 0, 10)]
    );
    assert!(log.borrow().contains(&Op::Resize(1, 16 << 20)));

    // A resize the backstore refuses (the fake refuses < 4096 bytes) is
    // answered with its errno.
    let shrink = Some(Reconfig::DevSize(512));
    send(&addr, RawEvent(event(NlCmd::Reconfig, A, 1, 10, shrink))).await;
    assert_eq!(
        wait_replies(&fake, 2).await[1],
        (cmd::RECONFIG_DEVICE_DONE, -libc::EINVAL, 10)
    );
    assert_eq!(send(&addr, ListDevices).await, vec![1]);
}

#[actix::test]
async fn dev_config_change_whose_backstore_fails_keeps_the_old_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 1, A, 8 << 20, 512);
    let (mut f, log) = factory();
    f.fail_open
        .push(("thin/default/missing".into(), libc::ENOENT));
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 1);

    let change = Some(Reconfig::DevCfg("thin/default/missing".into()));
    send(&addr, RawEvent(event(NlCmd::Reconfig, A, 1, 10, change))).await;
    assert_eq!(
        wait_replies(&fake, 1).await,
        vec![(cmd::RECONFIG_DEVICE_DONE, -libc::ENOENT, 10)]
    );
    // The old device was never stopped and is still served.
    assert_eq!(send(&addr, ListDevices).await, vec![1]);
    assert_eq!(
        log.borrow()
            .iter()
            .filter(|o| matches!(o, Op::Stop(_)))
            .count(),
        0,
        "{:?}",
        log.borrow()
    );
    assert!(log.borrow().contains(&Op::OpenFailed(1)));

    // A change to a backstore that opens re-opens the device.
    let change = Some(Reconfig::DevCfg("thin/default/b".into()));
    send(&addr, RawEvent(event(NlCmd::Reconfig, A, 1, 11, change))).await;
    assert_eq!(
        wait_replies(&fake, 2).await[1],
        (cmd::RECONFIG_DEVICE_DONE, 0, 11)
    );
    assert_eq!(send(&addr, ListDevices).await, vec![1]);
    let log = log.borrow();
    assert!(log.contains(&Op::Stop(1)), "{log:?}");
    assert!(matches!(log.last(), Some(Op::Spawn(r)) if r.uio.dev_config == "thin/default/b"));
}

#[actix::test]
async fn removed_is_answered_after_the_device_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 1, A, 8 << 20, 512);
    let (f, log) = factory();
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    f.stop_gates.borrow_mut().insert(1, gate);
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 1);
    send(&addr, RawEvent(event(NlCmd::Removed, A, 1, 10, None))).await;
    assert_eq!(send(&addr, ListDevices).await, Vec::<u32>::new());
    assert!(fake.sent().is_empty(), "REMOVED answered before the close");
    release.send(()).unwrap();
    assert_eq!(
        wait_replies(&fake, 1).await,
        vec![(cmd::REMOVED_DEVICE_DONE, 0, 10)]
    );
    assert!(log.borrow().contains(&Op::Stop(1)));
}

/// After a stop whose drain deadline abandoned commands, the same ring still
/// holds them: the re-opened device is opened as adopted (its recovery policy
/// deals with them) instead of walking the ring from its tail and executing
/// them again. A clean stop re-opens as a new device.
#[actix::test]
async fn a_reopen_after_abandoned_commands_applies_recovery() {
    let dir = tempfile::tempdir().unwrap();
    // Even with replay configured: replay would execute them again.
    let cfg = tcmud::config::DaemonConfig {
        recovery: tcmud::config::RecoveryPolicy::Replay,
        ..config(dir.path(), true)
    };
    set_uio_name(&cfg, 1, A);
    let (f, log) = factory();
    let abandon = std::rc::Rc::clone(&f.abandon_on_stop);
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    send(&addr, RawEvent(event(NlCmd::Added, A, 1, 10, None))).await;
    // A clean stop: the new backstore is served as a new device.
    let change = Some(Reconfig::DevCfg("thin/default/b".into()));
    send(&addr, RawEvent(event(NlCmd::Reconfig, A, 1, 10, change))).await;
    assert_eq!(
        wait_replies(&fake, 2).await[1],
        (cmd::RECONFIG_DEVICE_DONE, 0, 10)
    );
    let last_adopted = |log: &Log| match log.borrow().last() {
        Some(Op::Spawn(r)) if r.adopted => {
            assert_eq!(r.recovery, tcmud::config::RecoveryPolicy::Reset);
            Some((r.uio.dev_config.clone(), true))
        }
        Some(Op::Spawn(r)) => Some((r.uio.dev_config.clone(), false)),
        _ => None,
    };
    assert_eq!(last_adopted(&log), Some(("thin/default/b".into(), false)));
    // The drain deadline abandons two commands: recovery applies.
    abandon.borrow_mut().insert(1, 2);
    set_uio_name(&cfg, 1, "tcm-user/1/a/thin/default/b");
    let change = Some(Reconfig::DevCfg("thin/default/c".into()));
    let b = "tcm-user/1/a/thin/default/b";
    send(&addr, RawEvent(event(NlCmd::Reconfig, b, 1, 10, change))).await;
    assert_eq!(
        wait_replies(&fake, 3).await[2],
        (cmd::RECONFIG_DEVICE_DONE, 0, 10)
    );
    assert_eq!(last_adopted(&log), Some(("thin/default/c".into(), true)));
}
