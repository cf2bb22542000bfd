//! A panic in one device's setup (pool open, volume create, ring mapping: all on
//! the supervisor thread) fails that device alone: the supervisor keeps serving
//! the others, lists the device as failed, answers its event with an error, and
//! the same panic at adoption (the next start) does not take the daemon down.

use crate::util::supervisor::*;
use actix::Actor;
use tcmud::supervisor::{FakeSource, ListDevices, ListFailed, RawEvent, Supervisor};
use tcmud_core::netlink::{cmd, NlCmd};

const GOOD: &str = "tcm-user/1/good/thin/default/vol0";
const BAD: &str = "tcm-user/1/bad/thin/default/boom";
const LATER: &str = "tcm-user/1/later/thin/default/vol1";

/// Adoption at start-up: the panicking device is failed, the other served,
/// and the supervisor still handles events afterwards.
#[actix::test]
async fn panic_at_adoption_fails_that_device_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 3, GOOD, 8 << 20, 512);
    add_kernel_device(&cfg, 7, BAD, 8 << 20, 512);
    let (mut f, log) = factory();
    f.panic_on.push("thin/default/boom".into());
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 1, "the good device is adopted");
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![3]);
    let failed = addr.send(ListFailed).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].minor, 7);
    assert_eq!(failed[0].dev_config, "thin/default/boom");
    assert!(
        failed[0].why.contains("injected setup panic"),
        "{}",
        failed[0].why
    );

    // The supervisor is alive: a new device is served and answered.
    add_kernel_device(&cfg, 9, LATER, 8 << 20, 512);
    addr.send(RawEvent(event(NlCmd::Added, LATER, 9, 90, None)))
        .await
        .unwrap();
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![3, 9]);
    let replies: Vec<_> = fake.sent().iter().map(|p| decode_reply(p)).collect();
    assert_eq!(replies, vec![(cmd::ADDED_DEVICE_DONE, 0, 90)]);
    assert_eq!(spawned_minors(&log), vec![3, 9]);
}

/// An ADDED event whose setup panics is answered with -EIO; the device's
/// REMOVED clears it from the failed list.
#[actix::test]
async fn panic_on_added_is_answered_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (mut f, _log) = factory();
    f.panic_on.push("thin/default/boom".into());
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    add_kernel_device(&cfg, 7, BAD, 8 << 20, 512);
    addr.send(RawEvent(event(NlCmd::Added, BAD, 7, 70, None)))
        .await
        .unwrap();
    assert_eq!(addr.send(ListDevices).await.unwrap(), Vec::<u32>::new());
    let failed = addr.send(ListFailed).await.unwrap();
    assert_eq!(failed.iter().map(|d| d.minor).collect::<Vec<_>>(), vec![7]);
    addr.send(RawEvent(event(NlCmd::Removed, BAD, 7, 70, None)))
        .await
        .unwrap();
    assert!(addr.send(ListFailed).await.unwrap().is_empty());
    let replies: Vec<_> = fake.sent().iter().map(|p| decode_reply(p)).collect();
    assert_eq!(
        replies,
        vec![
            (cmd::ADDED_DEVICE_DONE, -libc::EIO, 70),
            (cmd::REMOVED_DEVICE_DONE, 0, 70),
        ]
    );
}
