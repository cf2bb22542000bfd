//! The D-Bus service: its own thread and runtime, the bus name, the object
//! manager and one handler object per served subtype.
//!
//! Nothing here runs on the supervisor's thread: requests are answered on the
//! `tcmud-dbus` thread (checks on its blocking pool), and the daemon's state
//! is read through the same [`View`] the control socket uses.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use zbus::fdo::{ObjectManager, RequestNameFlags, RequestNameReply};
use zbus::names::BusName;

use super::check::{self, HandlerInfo, Served};
use super::{DbusError, BUS_NAME, INTERFACE, ROOT_PATH};
use crate::config::Subtypes;
use crate::control::daemon::View;

/// What the service reads from the daemon for each request.
pub struct DbusContext {
    subtypes: Subtypes,
    file_roots: RwLock<Vec<PathBuf>>,
    view: Box<dyn View>,
}

impl std::fmt::Debug for DbusContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbusContext")
            .field("subtypes", &self.subtypes)
            .finish_non_exhaustive()
    }
}

impl DbusContext {
    /// The served `subtypes` (fixed for the daemon's life), `file_roots`
    /// (follow reloads: [`DbusService::set_file_roots`]) and the daemon's
    /// pools through `view`.
    pub fn new(subtypes: Subtypes, file_roots: Vec<PathBuf>, view: Box<dyn View>) -> Self {
        DbusContext {
            subtypes,
            file_roots: RwLock::new(file_roots),
            view,
        }
    }

    /// Runs `f` on the daemon's current state.
    fn with_served<T>(&self, f: impl FnOnce(&Served<'_>) -> T) -> Result<T, String> {
        let view = self.view.view()?;
        let roots = self
            .file_roots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Ok(f(&Served {
            subtypes: &self.subtypes,
            file_roots: &roots,
            registries: &view.registries,
        }))
    }

    /// `CheckConfig`'s answer: (valid, message).
    pub fn check(&self, h: &HandlerInfo, cfgstring: &str) -> (bool, String) {
        match self.with_served(|s| check::check_config(h, cfgstring, s)) {
            Ok(Ok(what)) => (true, what),
            Ok(Err(why)) => (false, why),
            Err(e) => (false, format!("tcmud cannot check it now: {e}")),
        }
    }

    /// `ConfigDesc`'s value.
    pub fn desc(&self, h: &HandlerInfo) -> String {
        self.with_served(|s| check::config_desc(h, s))
            .unwrap_or_else(|e| format!("(tcmud cannot describe it now: {e})"))
    }
}

/// One handler object (`/org/kernel/TCMUService1/<subtype>`).
struct HandlerObject {
    info: HandlerInfo,
    ctx: Arc<DbusContext>,
}

#[zbus::interface(name = "org.kernel.TCMUService1")]
impl HandlerObject {
    /// Whether a device with this `dev_config` would be served, and why not.
    #[zbus(name = "CheckConfig", out_args("is_valid", "message"))]
    async fn check_config(&self, configstr: String) -> (bool, String) {
        let (ctx, info) = (Arc::clone(&self.ctx), self.info.clone());
        let answer = tokio::task::spawn_blocking(move || ctx.check(&info, &configstr)).await;
        let (ok, message) =
            answer.unwrap_or_else(|e| (false, format!("tcmud failed to check it: {e}")));
        tracing::info!(subtype = %self.info.subtype, ok, %message, "D-Bus CheckConfig");
        (ok, message)
    }

    /// The form of the cfgstring (after `<subtype>/`) and what it names.
    #[zbus(property(emits_changed_signal = "false"), name = "ConfigDesc")]
    async fn config_desc(&self) -> String {
        let (ctx, info) = (Arc::clone(&self.ctx), self.info.clone());
        tokio::task::spawn_blocking(move || ctx.desc(&info))
            .await
            .unwrap_or_else(|e| format!("(tcmud failed to describe it: {e})"))
    }

    /// The subtype (the first element of `dev_config`).
    #[zbus(property(emits_changed_signal = "const"), name = "SubType")]
    fn sub_type(&self) -> String {
        self.info.subtype.clone()
    }
}

/// Where to connect.
#[derive(Debug, Clone, Default)]
pub struct DbusOptions {
    /// A bus address (`unix:path=...`); `None`: the system bus
    /// (`$DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`).
    pub address: Option<String>,
}

/// How the service started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The name is ours; the objects are served.
    Serving {
        /// The subtypes offered.
        subtypes: Vec<String>,
    },
    /// Another process owns the name (tcmu-runner): tcmud runs without D-Bus.
    NameTaken {
        /// The owner's pid, when the bus says.
        owner_pid: Option<u32>,
    },
    /// No bus to connect to: tcmud runs without D-Bus.
    NoBus(String),
    /// The bus refused the name (its policy does not let tcmud own it):
    /// tcmud runs without D-Bus.
    Refused(String),
}

/// The running service; dropping it releases the name and stops the thread.
#[derive(Debug)]
pub struct DbusService {
    ctx: Arc<DbusContext>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    started: mpsc::Receiver<Started>,
    thread: Option<JoinHandle<()>>,
}

impl DbusService {
    /// Starts the service thread; it connects, exports the objects and asks
    /// for the name, logging the outcome ([`DbusService::wait_started`]
    /// returns it). Never blocks on the bus.
    pub fn start(opts: DbusOptions, ctx: DbusContext) -> Result<DbusService, DbusError> {
        let ctx = Arc::new(ctx);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (started_tx, started) = mpsc::channel();
        let thread_ctx = Arc::clone(&ctx);
        let thread = std::thread::Builder::new()
            .name("tcmud-dbus".into())
            .spawn(move || run(opts, thread_ctx, stop_rx, started_tx))
            .map_err(DbusError::Thread)?;
        Ok(DbusService {
            ctx,
            stop: Some(stop_tx),
            started,
            thread: Some(thread),
        })
    }

    /// How the start went, once known (`None`: not within `timeout`).
    pub fn wait_started(&self, timeout: Duration) -> Option<Started> {
        self.started.recv_timeout(timeout).ok()
    }

    /// The directories `file/` images may live under, after a reload.
    pub fn set_file_roots(&self, roots: Vec<PathBuf>) {
        *self
            .ctx
            .file_roots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = roots;
    }
}

impl Drop for DbusService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    opts: DbusOptions,
    ctx: Arc<DbusContext>,
    stop: tokio::sync::oneshot::Receiver<()>,
    started: mpsc::Sender<Started>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let why = format!("cannot start its runtime: {e}");
            tracing::warn!("D-Bus: {why}; running without it");
            let _ = started.send(Started::NoBus(why));
            return;
        }
    };
    rt.block_on(async move {
        let (outcome, conn) = connect(&opts, ctx).await;
        log_outcome(&outcome, &opts);
        let _ = started.send(outcome);
        if conn.is_some() {
            let _ = stop.await;
        }
        drop(conn);
    });
    // A check still waiting for the supervisor (which may be the thread
    // joining this one at shutdown) is left behind, not waited for.
    rt.shutdown_background();
}

/// Connects, exports, asks for the name; the connection when serving.
async fn connect(opts: &DbusOptions, ctx: Arc<DbusContext>) -> (Started, Option<zbus::Connection>) {
    let (handlers, skipped) = check::handlers(&ctx.subtypes);
    for s in &skipped {
        tracing::warn!("D-Bus: {s}");
    }
    let built = async {
        let mut b = match &opts.address {
            Some(a) => zbus::connection::Builder::address(a.as_str())?,
            None => zbus::connection::Builder::system()?,
        };
        b = b.serve_at(ROOT_PATH, ObjectManager)?;
        for h in &handlers {
            let obj = HandlerObject {
                info: h.clone(),
                ctx: Arc::clone(&ctx),
            };
            b = b.serve_at(format!("{ROOT_PATH}/{}", h.subtype), obj)?;
        }
        b.build().await
    };
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, built).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (Started::NoBus(e.to_string()), None),
        Err(_) => {
            return (
                Started::NoBus(format!(
                    "the bus did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )),
                None,
            )
        }
    };
    match conn
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => (
            Started::Serving {
                subtypes: handlers.into_iter().map(|h| h.subtype).collect(),
            },
            Some(conn),
        ),
        Ok(RequestNameReply::Exists | RequestNameReply::InQueue) | Err(zbus::Error::NameTaken) => (
            Started::NameTaken {
                owner_pid: owner_pid(&conn).await,
            },
            None,
        ),
        Err(e) => (Started::Refused(e.to_string()), None),
    }
}

/// How long connecting to the bus may take before tcmud gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

async fn owner_pid(conn: &zbus::Connection) -> Option<u32> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.ok()?;
    let name = BusName::try_from(BUS_NAME).ok()?;
    dbus.get_connection_unix_process_id(name).await.ok()
}

fn log_outcome(outcome: &Started, opts: &DbusOptions) {
    let bus = opts.address.as_deref().unwrap_or("system bus");
    match outcome {
        Started::Serving { subtypes } => tracing::info!(
            bus,
            name = BUS_NAME,
            path = ROOT_PATH,
            interface = INTERFACE,
            ?subtypes,
            "D-Bus: serving targetcli's user backstores"
        ),
        Started::NameTaken { owner_pid } => tracing::warn!(
            bus,
            owner_pid = owner_pid.map(i64::from).unwrap_or(-1),
            "D-Bus: {BUS_NAME} is owned by another process{} (tcmu-runner?): targetcli will list \
             that daemon's handlers, not tcmud's; tcmud runs without D-Bus",
            owner_pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Started::Refused(why) => tracing::warn!(
            bus,
            "D-Bus: the bus refused {BUS_NAME} ({why}); is tcmud's policy installed \
             (/usr/share/dbus-1/system.d/tcmud.conf from dist/tcmud-dbus.conf, then reload \
             dbus)? tcmud runs without D-Bus"
        ),
        Started::NoBus(why) => tracing::info!(
            bus,
            "D-Bus: not offered ({why}); tcmud runs without it (set [daemon] dbus = false to skip \
             trying)"
        ),
    }
}
