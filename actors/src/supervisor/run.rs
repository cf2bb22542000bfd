//! Running the daemon: prerequisites, netlink guard, supervisor, signals, shutdown.

use super::actor::{Reload, Shutdown, Supervisor};
use super::coexist::{self, NetlinkBlock};
use super::instance::{InstanceError, InstanceLock};
use super::netlink::{self, NetlinkError};
use super::real::{classify_as, RealFactory};
use super::sysfs::{self, Missing};
use crate::config::{self, DaemonConfig, Overrides};
use crate::logging::LogHandle;
use crate::signals::{self, SignalEvent};
use actix::Actor;
use std::path::PathBuf;
use tcmud_core::netlink::emit_set_features;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Another tcmud runs (or the lock could not be taken).
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// A kernel prerequisite is missing.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// Netlink setup failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// SET_FEATURES was refused (replies need CAP_NET_ADMIN).
    #[error("cannot enable netlink replies (SET_FEATURES): {0}")]
    SetFeatures(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The actix runtime failed.
    #[error("actor system failed: {0}")]
    Runtime(String),
    /// The kernel event stream ended unexpectedly.
    #[error("the kernel event stream (netlink) ended unexpectedly")]
    EventStreamEnded,
    /// The control socket could not be created.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

/// Where the config came from, to re-read it on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct ReloadSource {
    /// `--config`.
    pub config_path: Option<PathBuf>,
    /// The command-line overrides (they win over the file on reload too).
    pub overrides: Overrides,
}

/// Runs the daemon until SIGTERM/SIGINT (Ok) or a fatal error. Blocks the thread.
pub fn run_daemon(
    cfg: DaemonConfig,
    reload: ReloadSource,
    log: Option<LogHandle>,
) -> Result<(), SupervisorError> {
    // First of all: a second daemon must not touch module parameters or rings.
    let lock = InstanceLock::acquire(&cfg.run_dir)?;
    tracing::debug!(lock = %lock.path().display(), "single-instance lock held");
    sysfs::check_prerequisites(&cfg)?;
    if cfg.recovery == config::RecoveryPolicy::Replay {
        tracing::warn!(
            "recovery = \"replay\": adopted devices whose ring offers out-of-order \
             completion (every current kernel) are refused, not replayed"
        );
    }
    let system = actix::System::new();
    let outcome = system.block_on(serve(cfg, reload, log));
    // The backstore thread (still running) closes the images the drained
    // devices detached from; librados must be shut down before exit.
    match crate::backstore::wait_images_closed(IMAGES_CLOSE_TIMEOUT) {
        Ok(()) => tracing::debug!("every rbd image closed"),
        Err(n) => tracing::error!(
            connections = n,
            timeout = ?IMAGES_CLOSE_TIMEOUT,
            "rbd connections still open at exit: librados may crash the process as it exits"
        ),
    }
    outcome
}

/// How long the exit waits for RBD images to close (an unreachable cluster
/// can hold `rbd_close` up to its operation timeout).
const IMAGES_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

async fn serve(
    cfg: DaemonConfig,
    reload: ReloadSource,
    log: Option<LogHandle>,
) -> Result<(), SupervisorError> {
    let mut signals = signals::listen().map_err(SupervisorError::Signals)?;
    let exclusive = coexist::exclusive(&cfg, |d| classify_as(d, &cfg.subtypes));
    let mut block = NetlinkBlock::engage(&cfg, exclusive);
    let source = netlink::connect().await?;
    // The setting is global to the module: without replies, clear a stale 1 left by an
    // earlier daemon, or every new device would wait forever for an answer; but not
    // beside another daemon, which may have turned replies on for its devices.
    let features = if coexist::send_set_features(&cfg, exclusive) {
        Some(
            source
                .replier
                .send(emit_set_features(cfg.netlink_replies))
                .await,
        )
    } else {
        None
    };
    match features {
        None => tracing::info!(
            "module_params shared: the kernel's reply flag (SET_FEATURES) left as it is"
        ),
        Some(features) => match features {
            Ok(()) if cfg.netlink_replies => {
                tracing::info!("kernel command replies enabled (SUPP_KERN_CMD_REPLY)")
            }
            Ok(()) => tracing::info!("kernel command replies disabled (SUPP_KERN_CMD_REPLY=0)"),
            Err(e) if cfg.netlink_replies => {
                return Err(SupervisorError::SetFeatures(e.to_string()))
            }
            Err(e) => tracing::warn!(error = %e, "cannot clear SUPP_KERN_CMD_REPLY"),
        },
    }
    let factory = Box::new(RealFactory::new(&cfg));
    let (mut sup, mut sig) = Supervisor::new(cfg.clone(), factory, source);
    // WatchdogSec= in the unit: ping at half the interval, from the supervisor's loop.
    sup.set_watchdog(sd_notify::watchdog_enabled().map(|d| d / 2));
    let addr = sup.start();
    let _control = start_control(&cfg, &addr, log.as_ref())?;
    let _metrics = match cfg.metrics {
        None => None,
        Some(at) => Some(crate::control::metrics::MetricsServer::start(
            at,
            crate::control::metrics::DaemonCollector::new(std::sync::Arc::new(
                crate::control::daemon::SupervisorView(addr.clone()),
            )),
        )?),
    };
    let dbus = start_dbus(&cfg, &addr);
    let adopted = (&mut sig.ready).await.unwrap_or(0);
    block.release();
    if let Err(err) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!(%err, "sd_notify READY failed (not under systemd?)");
    }
    tracing::info!(adopted, "tcmud ready");
    let outcome = loop {
        tokio::select! {
            s = signals.recv() => match s {
                Some(SignalEvent::Reload) => {
                    reload_config(&reload, log.as_ref(), &addr, dbus.as_ref()).await
                }
                Some(SignalEvent::Shutdown) | None => break Ok(()),
            },
            _ = &mut sig.source_ended => break Err(SupervisorError::EventStreamEnded),
        }
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    if let Err(err) = addr.send(Shutdown).await {
        tracing::error!(%err, "supervisor gone before shutdown");
    }
    outcome
}

/// Starts the control socket (`<run_dir>/control.sock`); stopped and
/// removed when the returned server is dropped at the end of `serve`.
fn start_control(
    cfg: &DaemonConfig,
    addr: &actix::Addr<Supervisor>,
    log: Option<&LogHandle>,
) -> Result<crate::control::server::Server, SupervisorError> {
    use crate::control::{daemon, server};
    let handler = daemon::DaemonControl::new(
        Box::new(daemon::SupervisorView(addr.clone())),
        log.cloned(),
        cfg.configfs_root.clone(),
    )
    .with_subtypes(cfg.subtypes.clone());
    server::Server::start(
        server::ServerOptions::new(cfg.run_dir.join("control.sock")),
        std::sync::Arc::new(handler),
    )
    .map_err(SupervisorError::Control)
}

/// Starts `org.kernel.TCMUService1` on the system bus (`[daemon] dbus`) on
/// its own thread; a missing bus or a name owned by tcmu-runner is logged
/// there and the daemon runs without it.
fn start_dbus(
    cfg: &DaemonConfig,
    addr: &actix::Addr<Supervisor>,
) -> Option<crate::dbus::DbusService> {
    if !cfg.dbus {
        tracing::debug!("D-Bus off ([daemon] dbus = false)");
        return None;
    }
    let ctx = crate::dbus::DbusContext::new(
        cfg.subtypes.clone(),
        cfg.file_roots.clone(),
        Box::new(crate::control::daemon::SupervisorView(addr.clone())),
    );
    match crate::dbus::DbusService::start(crate::dbus::DbusOptions::default(), ctx) {
        Ok(s) => Some(s),
        Err(err) => {
            tracing::warn!(%err, "D-Bus not offered");
            None
        }
    }
}

async fn reload_config(
    src: &ReloadSource,
    log: Option<&LogHandle>,
    addr: &actix::Addr<Supervisor>,
    dbus: Option<&crate::dbus::DbusService>,
) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    let loaded = config::load(src.config_path.as_deref())
        .and_then(|c| config::apply_overrides(c, &src.overrides));
    match loaded {
        Err(err) => tracing::error!(%err, "config reload failed; keeping the running config"),
        Ok(cfg) => {
            if let Some(log) = log {
                if let Err(err) = log.set_level(&cfg.log_level) {
                    tracing::error!(%err, "log level not changed");
                }
            }
            if let Some(dbus) = dbus {
                dbus.set_file_roots(cfg.file_roots.clone());
            }
            match crate::priority::apply(cfg.nice) {
                None => {}
                Some(Ok(threads)) => tracing::info!(nice = cfg.nice, threads, "CPU priority set"),
                Some(Err(err)) => tracing::error!(%err, "CPU priority not changed"),
            }
            if let Err(err) = addr.send(Reload(cfg)).await {
                tracing::error!(%err, "supervisor gone during reload");
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}
