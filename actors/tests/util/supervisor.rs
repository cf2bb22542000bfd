//! Shared helpers of the supervisor tests: a fake /sys + configfs tree, a fake
//! device factory recording every operation, reply decoding.

use futures::future::LocalBoxFuture;
use std::cell::RefCell;
use std::fs;
use std::path::Path;
use std::rc::Rc;
use tcmud::config::DaemonConfig;
use tcmud::supervisor::{
    DeviceCtl, DeviceFactory, DeviceRequest, Opened, Ownership, ReconfigError, SpawnError, Stopped,
};
use tcmud_core::netlink::{emit_event, AttrIter, NlCmd, NlEvent, Reconfig};

/// What the fake factory saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Spawn(DeviceRequest),
    SpawnFailed(u32),
    OpenFailed(u32),
    Stop(u32),
    Resize(u32, u64),
    WriteCache(u32, bool),
    Flush,
    Reload(usize),
}

pub type Log = Rc<RefCell<Vec<Op>>>;

pub struct FakeFactory {
    pub log: Log,
    /// dev_configs whose spawn fails with this errno.
    pub fail: Vec<(String, i32)>,
    /// dev_configs whose spawn panics (a bug in pool open / volume create).
    pub panic_on: Vec<String>,
    pub failed_flag: Rc<RefCell<bool>>,
    /// Stops of these minors wait until the sender is used or dropped (a hung drain).
    pub stop_gates: StopGates,
    /// Resizes of these minors wait likewise (a backstore still growing).
    pub resize_gates: StopGates,
    /// dev_configs whose backstore cannot be opened (`open`), with this errno.
    pub fail_open: Vec<(String, i32)>,
    /// Devices (by minor) whose actor is gone; a new spawn of the minor clears it.
    pub abandoned: Abandoned,
    /// The next stop of these minors reports this many commands abandoned.
    pub abandon_on_stop: AbandonOnStop,
}

pub type StopGates =
    Rc<RefCell<std::collections::HashMap<u32, tokio::sync::oneshot::Receiver<()>>>>;

struct FakeDev {
    minor: u32,
    log: Log,
    failed: Rc<RefCell<bool>>,
    gates: StopGates,
    resize_gates: StopGates,
    abandoned: Abandoned,
    abandon_on_stop: AbandonOnStop,
}

/// Commands a fake device's stop reports abandoned, by minor.
pub type AbandonOnStop = Rc<RefCell<std::collections::HashMap<u32, usize>>>;

/// Minors whose fake device actor is gone without a stop (abandoned).
pub type Abandoned = Rc<RefCell<std::collections::HashSet<u32>>>;

impl DeviceCtl for FakeDev {
    fn stop(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        let gate = self.gates.borrow_mut().remove(&self.minor);
        Box::pin(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            tokio::task::yield_now().await; // a drain takes a moment
            self.log.borrow_mut().push(Op::Stop(self.minor));
        })
    }
    fn resize(&self, n: u64) -> LocalBoxFuture<'static, Result<(), ReconfigError>> {
        let gate = self.resize_gates.borrow_mut().remove(&self.minor);
        let (log, minor) = (Rc::clone(&self.log), self.minor);
        Box::pin(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            log.borrow_mut().push(Op::Resize(minor, n));
            if n < 4096 {
                return Err(ReconfigError {
                    errno: libc::EINVAL,
                    message: "shrink refused".into(),
                });
            }
            Ok(())
        })
    }
    fn set_write_cache(&self, on: bool) {
        self.log.borrow_mut().push(Op::WriteCache(self.minor, on));
    }
    fn is_failed(&self) -> bool {
        *self.failed.borrow()
    }
    fn is_finished(&self) -> bool {
        self.abandoned.borrow().contains(&self.minor)
    }
    fn stop_reporting(self: Box<Self>) -> LocalBoxFuture<'static, Stopped> {
        let abandoned = self
            .abandon_on_stop
            .borrow_mut()
            .remove(&self.minor)
            .unwrap_or(0);
        let stop = self.stop();
        Box::pin(async move {
            stop.await;
            Stopped { abandoned }
        })
    }
}

impl DeviceFactory for FakeFactory {
    fn ownership(&self, dev_config: &str) -> Ownership {
        tcmud::supervisor::real::classify(dev_config)
    }
    fn spawn(&mut self, req: DeviceRequest) -> Result<Box<dyn DeviceCtl>, SpawnError> {
        if self.panic_on.contains(&req.uio.dev_config) {
            self.log.borrow_mut().push(Op::SpawnFailed(req.minor));
            panic!("injected setup panic for {}", req.uio.dev_config);
        }
        if let Some((_, errno)) = self.fail.iter().find(|(c, _)| *c == req.uio.dev_config) {
            self.log.borrow_mut().push(Op::SpawnFailed(req.minor));
            return Err(SpawnError::new(*errno, "injected"));
        }
        let minor = req.minor;
        self.abandoned.borrow_mut().remove(&minor);
        self.log.borrow_mut().push(Op::Spawn(req));
        Ok(Box::new(FakeDev {
            minor,
            log: Rc::clone(&self.log),
            failed: Rc::clone(&self.failed_flag),
            gates: Rc::clone(&self.stop_gates),
            resize_gates: Rc::clone(&self.resize_gates),
            abandoned: Rc::clone(&self.abandoned),
            abandon_on_stop: Rc::clone(&self.abandon_on_stop),
        }))
    }
    fn open(&mut self, req: &DeviceRequest) -> Result<Opened, SpawnError> {
        match self
            .fail_open
            .iter()
            .find(|(c, _)| *c == req.uio.dev_config)
        {
            Some((_, errno)) => {
                self.log.borrow_mut().push(Op::OpenFailed(req.minor));
                Err(SpawnError::new(*errno, "injected open failure"))
            }
            None => Ok(Opened::nothing()),
        }
    }
    fn reload(&mut self, cfg: &DaemonConfig) {
        self.log.borrow_mut().push(Op::Reload(cfg.pools.len()));
    }
    fn flush_all(&self) -> Result<(), String> {
        self.log.borrow_mut().push(Op::Flush);
        Ok(())
    }
}

pub fn factory() -> (Box<FakeFactory>, Log) {
    let log: Log = Rc::default();
    let f = FakeFactory {
        log: Rc::clone(&log),
        fail: vec![],
        panic_on: vec![],
        failed_flag: Rc::default(),
        stop_gates: Rc::default(),
        resize_gates: Rc::default(),
        fail_open: vec![],
        abandoned: Rc::default(),
        abandon_on_stop: Rc::default(),
    };
    (Box::new(f), log)
}

/// A config rooted in `root` (sys/, cfg/, dev/), replies on or off.
pub fn config(root: &Path, replies: bool) -> DaemonConfig {
    let c = DaemonConfig {
        sys_root: root.join("sys"),
        configfs_root: root.join("cfg"),
        dev_root: root.join("dev"),
        netlink_replies: replies,
        ..DaemonConfig::default()
    };
    fs::create_dir_all(c.sys_root.join("module/target_core_user/parameters")).unwrap();
    fs::create_dir_all(c.configfs_root.join("target/core")).unwrap();
    c
}

/// Creates `/sys/class/uio/uio<minor>/name` and the configfs device with `size`.
pub fn add_kernel_device(cfg: &DaemonConfig, minor: u32, name: &str, size: u64, block: u32) {
    let d = cfg.sys_root.join(format!("class/uio/uio{minor}"));
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("name"), format!("{name}\n")).unwrap();
    let uio = tcmud_core::netlink::UioName::parse(name).unwrap();
    let c = cfg
        .configfs_root
        .join(format!("target/core/user_{}/{}", uio.hba, uio.dev));
    fs::create_dir_all(c.join("attrib")).unwrap();
    fs::write(
        c.join("info"),
        format!("Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: {block}  HwMaxSectors: 128\n        Config: {} Size: {size} MaxDataAreaMB: 1024\n", uio.dev_config),
    )
    .unwrap();
    fs::write(c.join("attrib/hw_block_size"), format!("{block}\n")).unwrap();
}

/// Names `/sys/class/uio/uio<minor>` as the kernel would (events are checked against it).
pub fn set_uio_name(cfg: &DaemonConfig, minor: u32, name: &str) {
    let d = cfg.sys_root.join(format!("class/uio/uio{minor}"));
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("name"), format!("{name}\n")).unwrap();
}

pub fn event(cmd: NlCmd, name: &str, minor: u32, id: u32, reconfig: Option<Reconfig>) -> Vec<u8> {
    emit_event(&NlEvent {
        cmd,
        device: name.into(),
        minor,
        device_id: Some(id),
        reconfig,
        unknown_attrs: vec![],
    })
    .unwrap()
}

/// A decoded `*_DONE` reply: (genl cmd, status, device id).
pub fn decode_reply(p: &[u8]) -> (u8, i32, u32) {
    let mut status = None;
    let mut id = None;
    for a in AttrIter::new(&p[4..]) {
        let a = a.unwrap();
        match a.kind {
            7 => status = Some(i32::from_ne_bytes(a.payload.try_into().unwrap())),
            8 => id = Some(u32::from_ne_bytes(a.payload.try_into().unwrap())),
            k => panic!("unexpected attribute {k}"),
        }
    }
    (p[0], status.unwrap(), id.unwrap())
}

pub fn spawned_minors(log: &Log) -> Vec<u32> {
    log.borrow()
        .iter()
        .filter_map(|o| match o {
            Op::Spawn(r) => Some(r.minor),
            _ => None,
        })
        .collect()
}

/// Waits (10 s at most) until the supervisor sent `n` replies: a device's stop
/// runs beside other events, so its reply may come after later messages were
/// answered. Returns the replies decoded.
pub async fn wait_replies(fake: &tcmud::supervisor::FakeSource, n: usize) -> Vec<(u8, i32, u32)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fake.sent().len() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    fake.sent().iter().map(|p| decode_reply(p)).collect()
}
