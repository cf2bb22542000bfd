//! Dead devices are reaped and retried: a device actor that failed for good
//! (restart budget exhausted) or is gone without a stop (abandoned) is closed
//! and opened again with a back-off, listed as failed meanwhile; a device whose
//! uio disappeared without a REMOVED event is closed and dropped. Each is logged.

use crate::util::supervisor::*;
use actix::{Actor, Addr};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tcmud::supervisor::{FakeSource, ListDevices, ListFailed, Supervisor};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture() -> (Buf, tracing::subscriber::DefaultGuard) {
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

/// Polls `cond` until it holds; fails after 20 s (a hang detector, not a
/// timing assertion).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const NAME: &str = "tcm-user/1/d/file//img";

fn start(
    f: Box<FakeFactory>,
    cfg: tcmud::config::DaemonConfig,
    first_retry: Duration,
) -> (Addr<Supervisor>, tcmud::supervisor::SupervisorSignals) {
    let (_fake, src) = FakeSource::new();
    let (mut sup, sig) = Supervisor::new(cfg, f, src);
    sup.set_reaping(
        Duration::from_millis(10),
        first_retry,
        Duration::from_secs(5),
    );
    (sup.start(), sig)
}

#[actix::test]
async fn a_failed_device_is_closed_and_retried_with_back_off() {
    let (buf, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 7, NAME, 1 << 20, 512);
    let (f, log) = factory();
    let failed = std::rc::Rc::clone(&f.failed_flag);
    // A long first delay: the device is seen waiting for its retry.
    let (addr, sig) = start(f, cfg, Duration::from_millis(300));
    sig.ready.await.unwrap();
    *failed.borrow_mut() = true;
    until("the failed device closed", || {
        log.borrow().contains(&Op::Stop(7))
    })
    .await;
    assert_eq!(addr.send(ListDevices).await.unwrap(), Vec::<u32>::new());
    let listed = addr.send(ListFailed).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].why.contains("retry 1"), "{listed:?}");
    // Retried (as an adopted device: recovery applies, nothing is created);
    // it fails again and is retried again, later.
    until("two retries", || spawned_minors(&log).len() >= 3).await;
    let log_now = log.borrow().clone();
    let spawns: Vec<_> = log_now
        .iter()
        .filter_map(|o| match o {
            Op::Spawn(r) => Some(r.adopted),
            _ => None,
        })
        .collect();
    assert!(spawns.iter().all(|a| *a), "{log_now:?}");
    // Every retry was preceded by the close of the failed device.
    let ops: Vec<_> = log_now
        .iter()
        .filter(|o| matches!(o, Op::Spawn(_) | Op::Stop(_)))
        .collect();
    for pair in ops[1..].chunks(2) {
        assert!(matches!(pair[0], Op::Stop(7)), "{ops:?}");
    }
    let text = buf.text();
    assert!(
        text.contains("retry=1") && text.contains("retry=2"),
        "{text}"
    );
    assert!(text.contains("failed for good"), "{text}");
    // The cause goes away: the next retry serves it for good.
    *failed.borrow_mut() = false;
    until("served again", || {
        log.borrow()
            .last()
            .is_some_and(|o| matches!(o, Op::Spawn(_)))
    })
    .await;
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![7]);
    assert_eq!(addr.send(ListFailed).await.unwrap(), vec![]);
}

#[actix::test]
async fn an_abandoned_device_is_reopened() {
    let (buf, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 7, NAME, 1 << 20, 512);
    let (f, log) = factory();
    let abandoned = std::rc::Rc::clone(&f.abandoned);
    let (addr, sig) = start(f, cfg, Duration::from_millis(1));
    sig.ready.await.unwrap();
    abandoned.borrow_mut().insert(7);
    until("re-opened", || spawned_minors(&log).len() == 2).await;
    assert!(log.borrow().contains(&Op::Stop(7)));
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![7]);
    assert_eq!(addr.send(ListFailed).await.unwrap(), vec![]);
    assert!(buf.text().contains("abandoned"), "{}", buf.text());
}

#[actix::test]
async fn a_device_whose_uio_is_gone_is_dropped() {
    let (buf, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 7, NAME, 1 << 20, 512);
    add_kernel_device(&cfg, 8, "tcm-user/1/e/file//img2", 1 << 20, 512);
    let (f, log) = factory();
    let (addr, sig) = start(f, cfg.clone(), Duration::from_millis(1));
    assert_eq!(sig.ready.await.unwrap(), 2);
    // A dev_config change the kernel applied before its event arrived is the
    // same kernel device: not dropped (the event re-opens it).
    set_uio_name(&cfg, 8, "tcm-user/1/e/file//img3");
    // The kernel device went away and its REMOVED event was lost.
    std::fs::remove_dir_all(cfg.sys_root.join("class/uio/uio7")).unwrap();
    until("closed", || log.borrow().contains(&Op::Stop(7))).await;
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![8]);
    assert_eq!(addr.send(ListFailed).await.unwrap(), vec![]);
    assert_eq!(spawned_minors(&log), vec![7, 8], "not re-opened");
    assert!(!log.borrow().contains(&Op::Stop(8)));
    assert!(
        buf.text()
            .contains("uio device gone without a REMOVED event"),
        "{}",
        buf.text()
    );
}
