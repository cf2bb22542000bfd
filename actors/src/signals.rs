//! Process signals as daemon events: SIGTERM/SIGINT shut down, SIGHUP reloads.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What a signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT: stop taking events, drain devices, flush pools, exit 0.
    Shutdown,
    /// SIGHUP: re-read the config (log level, new pools).
    Reload,
}

/// Starts listening (needs a running tokio/actix runtime); events arrive on the receiver.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<SignalEvent>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                Some(()) = term.recv() => SignalEvent::Shutdown,
                Some(()) = int.recv() => SignalEvent::Shutdown,
                Some(()) = hup.recv() => SignalEvent::Reload,
                else => break,
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
