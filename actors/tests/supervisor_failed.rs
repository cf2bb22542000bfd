//! A device actor that fails for good is noticed and logged once.

mod supervisor_common;

use actix::Actor;
use std::io::Write;
use std::sync::{Arc, Mutex};
use supervisor_common::*;
use tcmud::supervisor::{FakeSource, ListDevices, Supervisor};

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

#[actix::test]
async fn failed_device_is_logged_once() {
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(sub);

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 7, "tcm-user/1/d/file//img", 1 << 20, 512);
    let (f, _log) = factory();
    let failed = std::rc::Rc::clone(&f.failed_flag);
    let (_fake, src) = FakeSource::new();
    let (sup, sig) = Supervisor::new(cfg, f, src);
    let addr = sup.start();
    sig.ready.await.unwrap();
    *failed.borrow_mut() = true;
    let text = || String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    for _ in 0..100 {
        if text().contains("failed for good") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Let at least one more check run: still logged exactly once.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(text().matches("failed for good").count(), 1, "{}", text());
    assert!(text().contains("minor=7"));
    // The device stays in the table (the kernel device still exists).
    assert_eq!(addr.send(ListDevices).await.unwrap(), vec![7]);
}
