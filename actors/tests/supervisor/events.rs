//! The supervisor with a fake event source, a fake device factory and a fake /sys tree.

use crate::util::supervisor::*;
use actix::Actor;
use tcmud::supervisor::{FakeSource, ListDevices, RawEvent, Reload, Shutdown, Supervisor};
use tcmud_core::netlink::{cmd, NlCmd, Reconfig};

const THIN: &str = "tcm-user/1/dev0/thin/default/vol0";
const FILE: &str = "tcm-user/1/dev1/file//var/img";
const QCOW: &str = "tcm-user/2/q/qcow//tmp/img";

#[actix::test]
async fn adopts_owned_devices_with_their_geometry_and_skips_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 0, THIN, 64 << 20, 4096);
    add_kernel_device(&cfg, 1, FILE, 1 << 30, 512);
    add_kernel_device(&cfg, 2, QCOW, 1 << 20, 512);
    let other = cfg.sys_root.join("class/uio/uio3");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("name"), "some other uio\n").unwrap();

    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 2);
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![0, 1]);
    let reqs: Vec<_> = log
        .borrow()
        .iter()
        .filter_map(|o| match o {
            Op::Spawn(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_eq!((reqs[0].size_bytes, reqs[0].block_size), (64 << 20, 4096));
    assert_eq!(reqs[0].uio.dev_config, "thin/default/vol0");
    assert!(reqs[0].adopted);
    assert_eq!(reqs[0].dev_path, cfg.dev_root.join("uio0"));
    assert_eq!(reqs[0].sysfs_dir, cfg.sys_root.join("class/uio/uio0"));
    assert_eq!(
        reqs[0].configfs_dir.as_deref(),
        Some(cfg.configfs_root.join("target/core/user_1/dev0").as_path())
    );
    assert_eq!((reqs[1].size_bytes, reqs[1].block_size), (1 << 30, 512));
    // Adoption sends no replies.
    assert!(fake.sent().is_empty());
}

#[actix::test]
async fn owned_events_are_served_and_answered_foreign_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();

    add_kernel_device(&cfg, 4, THIN, 8 << 20, 512);
    add_kernel_device(&cfg, 5, QCOW, 8 << 20, 512);
    set_uio_name(&cfg, 6, "tcm-user/1/bad/thin/nopool");
    let evs = [
        event(NlCmd::Added, THIN, 4, 40, None),
        event(NlCmd::Added, QCOW, 5, 50, None), // foreign: no spawn, no reply
        vec![1, 2, 0, 0, 200, 0],               // malformed: dropped
        event(
            NlCmd::Reconfig,
            THIN,
            4,
            40,
            Some(Reconfig::DevSize(16 << 20)),
        ),
        event(
            NlCmd::Reconfig,
            THIN,
            4,
            40,
            Some(Reconfig::WriteCache(true)),
        ),
        event(NlCmd::Reconfig, QCOW, 5, 50, Some(Reconfig::DevSize(1))), // foreign
        event(NlCmd::Removed, QCOW, 5, 50, None),                        // foreign
        event(NlCmd::Removed, THIN, 4, 40, None),
        event(NlCmd::Reconfig, THIN, 4, 40, Some(Reconfig::DevSize(1))), // gone: ENODEV
        event(NlCmd::Added, "tcm-user/1/bad/thin/nopool", 6, 60, None),  // ours, invalid
    ];
    for e in evs {
        addr.send(RawEvent(e)).await.unwrap();
    }
    assert_eq!(addr.send(ListDevices).await.unwrap(), Vec::<u32>::new());
    let replies: Vec<_> = fake.sent().iter().map(|p| decode_reply(p)).collect();
    assert_eq!(
        replies,
        vec![
            (cmd::ADDED_DEVICE_DONE, 0, 40),
            (cmd::RECONFIG_DEVICE_DONE, 0, 40),
            (cmd::RECONFIG_DEVICE_DONE, 0, 40),
            (cmd::REMOVED_DEVICE_DONE, 0, 40),
            (cmd::RECONFIG_DEVICE_DONE, -libc::ENODEV, 40),
            (cmd::ADDED_DEVICE_DONE, -libc::EINVAL, 60),
        ]
    );
    let ops: Vec<_> = log
        .borrow()
        .iter()
        .filter(|o| !matches!(o, Op::Spawn(_)))
        .cloned()
        .collect();
    assert_eq!(
        ops,
        vec![
            Op::Resize(4, 16 << 20),
            Op::WriteCache(4, true),
            Op::Stop(4)
        ]
    );
    assert_eq!(spawned_minors(&log), vec![4]);
}

#[actix::test]
async fn spawn_failure_is_answered_with_its_errno() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (mut f, log) = factory();
    f.fail.push(("file//var/img".into(), libc::ENOENT));
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    set_uio_name(&cfg, 1, FILE);
    addr.send(RawEvent(event(NlCmd::Added, FILE, 1, 11, None)))
        .await
        .unwrap();
    addr.send(RawEvent(event(NlCmd::Removed, FILE, 1, 11, None)))
        .await
        .unwrap();
    addr.send(ListDevices).await.unwrap();
    let replies: Vec<_> = fake.sent().iter().map(|p| decode_reply(p)).collect();
    assert_eq!(
        replies,
        vec![
            (cmd::ADDED_DEVICE_DONE, -libc::ENOENT, 11),
            (cmd::REMOVED_DEVICE_DONE, 0, 11)
        ]
    );
    assert!(spawned_minors(&log).is_empty());
}

#[actix::test]
async fn no_replies_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    set_uio_name(&cfg, 0, THIN);
    addr.send(RawEvent(event(NlCmd::Added, THIN, 0, 1, None)))
        .await
        .unwrap();
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![0]);
    assert!(fake.sent().is_empty());
    assert_eq!(spawned_minors(&log), vec![0]);
}

#[actix::test]
async fn dev_config_change_reopens_and_foreign_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    set_uio_name(&cfg, 0, THIN);
    for e in [
        event(NlCmd::Added, THIN, 0, 1, None),
        event(
            NlCmd::Reconfig,
            THIN,
            0,
            1,
            Some(Reconfig::DevCfg("qcow//x".into())),
        ),
        event(
            NlCmd::Reconfig,
            THIN,
            0,
            1,
            Some(Reconfig::DevCfg("thin/default/vol9".into())),
        ),
    ] {
        addr.send(RawEvent(e)).await.unwrap();
    }
    // A message after the events waits until their handling (and replies) finished.
    addr.send(ListDevices).await.unwrap();
    let replies: Vec<_> = fake.sent().iter().map(|p| decode_reply(p).1).collect();
    assert_eq!(replies, vec![0, -libc::EINVAL, 0]);
    let log = log.borrow();
    assert!(matches!(log[1], Op::Stop(0)), "{log:?}");
    let Op::Spawn(r) = &log[2] else {
        panic!("{log:?}")
    };
    assert_eq!(r.uio.dev_config, "thin/default/vol9");
    assert_eq!(r.uio_name, "tcm-user/1/dev0/thin/default/vol9");
}

/// Each device's events are handled in order (a device's REMOVED answered after
/// its ADDED); different devices' events do not wait for each other.
#[actix::test]
async fn events_from_the_source_stream_are_handled_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (f, _log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    for i in 0..10u32 {
        let name = format!("tcm-user/1/d{i}/file//img{i}");
        set_uio_name(&cfg, i, &name);
        fake.push(event(NlCmd::Added, &name, i, 100 + i, None))
            .await;
        fake.push(event(NlCmd::Removed, &name, i, 100 + i, None))
            .await;
    }
    let replies = wait_replies(&fake, 20).await;
    assert_eq!(replies.len(), 20, "{replies:?}");
    for i in 0..10u32 {
        let mine: Vec<_> = replies.iter().filter(|r| r.2 == 100 + i).collect();
        assert_eq!(
            mine,
            [
                &(cmd::ADDED_DEVICE_DONE, 0, 100 + i),
                &(cmd::REMOVED_DEVICE_DONE, 0, 100 + i)
            ],
            "device {i}: {replies:?}"
        );
    }
    assert!(addr.send(ListDevices).await.unwrap().is_empty());
}

#[actix::test]
async fn shutdown_drains_every_device_then_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 0, THIN, 1 << 20, 512);
    add_kernel_device(&cfg, 1, FILE, 1 << 20, 512);
    let (f, log) = factory();
    let (_fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    addr.send(Reload(cfg)).await.unwrap();
    addr.send(Shutdown).await.unwrap();
    // The actor stopped: further messages fail.
    assert!(addr.send(ListDevices).await.is_err());
    let log = log.borrow();
    let tail: Vec<_> = log.iter().skip(2).cloned().collect();
    assert_eq!(tail.len(), 4, "{log:?}");
    assert_eq!(tail[0], Op::Reload(1));
    assert!(tail[1..3].contains(&Op::Stop(0)) && tail[1..3].contains(&Op::Stop(1)));
    assert_eq!(tail[3], Op::Flush);
}

#[actix::test]
async fn duplicate_add_is_idempotent_and_a_reused_minor_replaces_the_stale_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    set_uio_name(&cfg, 3, THIN);
    for e in [
        event(NlCmd::Added, THIN, 3, 1, None),
        event(NlCmd::Added, THIN, 3, 1, None), // same device again: nothing to do
    ] {
        addr.send(RawEvent(e)).await.unwrap();
    }
    // minor 3 now names another device
    set_uio_name(&cfg, 3, FILE);
    addr.send(RawEvent(event(NlCmd::Added, FILE, 3, 2, None)))
        .await
        .unwrap();
    let replies = wait_replies(&fake, 3).await;
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![3]);
    assert_eq!(
        replies,
        vec![
            (cmd::ADDED_DEVICE_DONE, 0, 1),
            (cmd::ADDED_DEVICE_DONE, 0, 1),
            (cmd::ADDED_DEVICE_DONE, 0, 2)
        ]
    );
    let log = log.borrow();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(matches!(&log[0], Op::Spawn(r) if r.uio.dev_config == "thin/default/vol0"));
    assert_eq!(log[1], Op::Stop(3));
    assert!(matches!(&log[2], Op::Spawn(r) if r.uio.dev_config == "file//var/img"));
}

#[actix::test]
async fn without_replies_a_dev_config_change_to_a_foreign_subtype_releases_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    set_uio_name(&cfg, 0, THIN);
    for e in [
        event(NlCmd::Added, THIN, 0, 1, None),
        event(
            NlCmd::Reconfig,
            THIN,
            0,
            1,
            Some(Reconfig::DevCfg("qcow//x".into())),
        ),
    ] {
        addr.send(RawEvent(e)).await.unwrap();
    }
    assert!(addr.send(ListDevices).await.unwrap().is_empty());
    assert_eq!(log.borrow().last(), Some(&Op::Stop(0)));
    assert!(fake.sent().is_empty());
}

#[actix::test]
async fn rescan_serves_devices_whose_added_event_was_lost_and_does_not_retry_failures() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (mut f, log) = factory();
    f.fail.push(("file//var/img".into(), libc::EIO));
    let (fake, src) = FakeSource::new();
    let (mut sup, sig) = Supervisor::new(cfg.clone(), f, src);
    sup.set_rescan_interval(std::time::Duration::from_millis(20));
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 0);
    add_kernel_device(&cfg, 0, THIN, 1 << 20, 512);
    add_kernel_device(&cfg, 1, FILE, 1 << 20, 512); // spawn fails
    add_kernel_device(&cfg, 2, QCOW, 1 << 20, 512); // foreign
    for _ in 0..500 {
        if !addr.send(ListDevices).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Several more rescans.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![0]);
    assert_eq!(spawned_minors(&log), vec![0]);
    let failed = log
        .borrow()
        .iter()
        .filter(|o| **o == Op::SpawnFailed(1))
        .count();
    assert_eq!(failed, 1, "a refused device is not retried");
    assert!(fake.sent().is_empty(), "no replies without events");
}

#[actix::test]
async fn an_overrun_rescans_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (mut sup, sig) = Supervisor::new(cfg.clone(), f, src);
    // No periodic rescan during the test: only the overrun can find the device.
    sup.set_rescan_interval(std::time::Duration::from_secs(3600));
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 0);
    // The ADDED event of this device was lost in the overrun.
    add_kernel_device(&cfg, 0, THIN, 1 << 20, 512);
    fake.overrun().await;
    // An event after the overrun is handled after it (one stream, in order).
    set_uio_name(&cfg, 1, FILE);
    fake.push(event(NlCmd::Added, FILE, 1, 11, None)).await;
    for _ in 0..1000 {
        if !fake.sent().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![0, 1]);
    assert_eq!(spawned_minors(&log), vec![0, 1]);
}

#[actix::test]
async fn events_that_disagree_with_sysfs_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    add_kernel_device(&cfg, 0, THIN, 1 << 20, 512);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 1);
    let forged = "tcm-user/1/dev0/file//etc/shadow";
    for e in [
        // a live minor pointed at another backstore
        event(NlCmd::Added, forged, 0, 1, None),
        // a dev_config change the kernel never made
        event(
            NlCmd::Reconfig,
            forged,
            0,
            1,
            Some(Reconfig::DevCfg("file//etc/shadow".into())),
        ),
        event(NlCmd::Reconfig, forged, 0, 1, Some(Reconfig::DevSize(1))),
        // a minor with no uio device at all
        event(NlCmd::Added, FILE, 7, 2, None),
    ] {
        addr.send(RawEvent(e)).await.unwrap();
    }
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![0]);
    // Only the adoption: no stop, no spawn, no resize, no reply.
    let log = log.borrow();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(matches!(&log[0], Op::Spawn(r) if r.uio.dev_config == "thin/default/vol0"));
    assert!(fake.sent().is_empty());
}

#[actix::test]
async fn a_dev_config_change_the_kernel_already_applied_is_accepted() {
    // Replies off: the kernel renames the uio device right after the event.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 0, THIN, 1 << 20, 512);
    let (f, log) = factory();
    let (_fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg.clone(), f, src);
    let addr = sup.start();
    assert_eq!(sig.ready.await.unwrap(), 1);
    set_uio_name(&cfg, 0, "tcm-user/1/dev0/thin/default/vol9");
    addr.send(RawEvent(event(
        NlCmd::Reconfig,
        THIN,
        0,
        1,
        Some(Reconfig::DevCfg("thin/default/vol9".into())),
    )))
    .await
    .unwrap();
    addr.send(ListDevices).await.unwrap();
    let log = log.borrow();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1], Op::Stop(0));
    assert!(matches!(&log[2], Op::Spawn(r) if r.uio.dev_config == "thin/default/vol9"));
}
