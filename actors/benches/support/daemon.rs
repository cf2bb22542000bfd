//! The daemon side of the benches: an actix System on a thread of its own
//! that starts real device actors (`spawn_device_with`, each on its own
//! arbiter with its backstore's I/O threads) over simulator rings, and
//! drains them on stop.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tcmud::backstore::BackstoreHandle;
use tcmud::device::{default_lun_config, spawn_device_with, DeviceOptions, DeviceSpec, RingSource};
use tcmud_core::sim::SimDevice;

/// One device to serve.
pub struct DeviceSetup {
    /// Its `dev_config` (also names it).
    pub dev_config: String,
    /// The simulator's side of the ring.
    pub dev: SimDevice,
    /// The backstore (from `open_backstore` or built directly).
    pub backstore: BackstoreHandle,
    /// Device size in bytes.
    pub size_bytes: u64,
    /// Initial write cache (WCE) setting.
    pub write_cache: bool,
}

enum Cmd {
    Spawn(Vec<(u32, DeviceSetup)>, std_mpsc::Sender<()>),
    Stop,
}

/// A daemon thread serving devices until [`Daemon::stop`].
pub struct Daemon {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    thread: Option<JoinHandle<()>>,
    next_minor: u32,
}

impl Daemon {
    /// Starts the actix System thread (no devices yet).
    pub fn start() -> Daemon {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let thread = std::thread::Builder::new()
            .name("bench-daemon".into())
            .spawn(move || {
                actix::System::new().block_on(async move {
                    let mut handles = Vec::new();
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Cmd::Spawn(devs, ack) => {
                                for (minor, d) in devs {
                                    handles.push(spawn(minor, d));
                                }
                                let _ = ack.send(());
                            }
                            Cmd::Stop => break,
                        }
                    }
                    for h in handles {
                        h.stop().await;
                    }
                });
            })
            .expect("daemon thread");
        Daemon {
            tx,
            thread: Some(thread),
            next_minor: 0,
        }
    }

    /// Starts `devs` and waits until their actors are spawned.
    pub fn spawn(&mut self, devs: Vec<DeviceSetup>) {
        let numbered = devs
            .into_iter()
            .map(|d| {
                self.next_minor += 1;
                (self.next_minor - 1, d)
            })
            .collect();
        let (ack, done) = std_mpsc::channel();
        self.tx
            .send(Cmd::Spawn(numbered, ack))
            .unwrap_or_else(|_| panic!("daemon thread gone"));
        done.recv_timeout(Duration::from_secs(30))
            .expect("devices started");
    }

    /// Drains and stops every device (nothing may be outstanding on their
    /// rings), then ends the thread.
    pub fn stop(mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            t.join().expect("daemon thread");
        }
    }
}

fn spawn(minor: u32, d: DeviceSetup) -> tcmud::device::DeviceHandle {
    let spec = DeviceSpec {
        minor,
        ..DeviceSpec::simulated(&d.dev_config, d.size_bytes)
    };
    let mut lun = default_lun_config(&d.dev_config);
    lun.write_cache = Some(d.write_cache);
    let opts = DeviceOptions {
        ring: RingSource::Parts {
            map: d.dev.map,
            len: d.dev.len,
            event_fd: d.dev.event_fd,
        },
        lun: Some(lun),
        ..DeviceOptions::default()
    };
    spawn_device_with(spec, d.backstore, opts).expect("spawn device")
}
