//! The control socket: operating a running daemon.
//!
//! `tcmud status`, `tcmud log-level` and the `tcmud pool …` / `tcmud volume
//! …` commands talk to the daemon over a Unix socket
//! (`<run_dir>/control.sock` unless `control_socket` says otherwise; 0600,
//! root or the daemon's user only) with the JSON-lines protocol of
//! [`protocol`]. Pool and volume commands on a pool the daemon serves run
//! in the daemon, on the pool it holds, while its LUNs keep serving (a
//! snapshot under write load holds every write acknowledged before it);
//! on any other pool, or with no daemon running, the CLI runs them offline
//! as before.
//!
//! - [`protocol`]: messages, error kinds, limits;
//! - [`server`]: the listener and per-connection threads;
//! - [`daemon`]: the requests run against the supervisor and its pools;
//! - [`metrics`]: Prometheus metrics over HTTP (off by default);
//! - [`client`]: the CLI's side, and the online/offline choice;
//! - [`commands`]: the CLI commands built on it.

pub mod client;
pub mod commands;
pub mod daemon;
pub mod metrics;
pub mod protocol;
mod rbd_volume;
pub mod server;

use std::path::PathBuf;

/// Errors of the control socket itself (requests fail with
/// [`protocol::ErrorKind`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be created.
    #[error("control socket {}: {source}", path.display())]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics listener could not be started.
    #[error("metrics on {addr}: {why}")]
    Metrics {
        /// Configured address.
        addr: std::net::SocketAddr,
        /// Why.
        why: String,
    },
}
