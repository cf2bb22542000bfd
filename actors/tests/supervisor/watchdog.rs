//! systemd's watchdog: WATCHDOG=1 comes from the supervisor's own loop, so a
//! supervisor that hangs stops it (and systemd restarts the daemon).

use crate::util::supervisor::*;
use crate::util::{own_process, test_name};
use actix::Actor;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use tcmud::supervisor::{FakeSource, Supervisor};

#[actix::test]
async fn the_supervisor_loop_sends_watchdog_pings() {
    // NOTIFY_SOCKET is read by every sd_notify of the process: set it in a
    // process of its own.
    if !own_process(&test_name!(the_supervisor_loop_sends_watchdog_pings)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The only test of this process: nothing else reads the environment meanwhile.
    std::env::set_var("NOTIFY_SOCKET", &sock_path);
    let cfg = config(dir.path(), false);
    let (f, _log) = factory();
    let (_fake, src) = FakeSource::new();
    let (mut sup, sig) = Supervisor::new(cfg, f, src);
    sup.set_watchdog(Some(Duration::from_millis(20)));
    let _addr = sup.start();
    sig.ready.await.unwrap();
    // Received on another thread: the supervisor runs on this one.
    let got = tokio::task::spawn_blocking(move || {
        let mut pings = 0;
        let mut buf = [0u8; 256];
        while pings < 3 {
            let n = sock.recv(&mut buf).expect("no WATCHDOG=1 within 20 s");
            if &buf[..n] == b"WATCHDOG=1\n" || &buf[..n] == b"WATCHDOG=1" {
                pings += 1;
            }
        }
        pings
    })
    .await
    .unwrap();
    assert_eq!(got, 3);
}
