//! The CLI's side of the control socket.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{ErrorBody, ErrorKind, Op, Outcome, Reply, Request, Response, VERSION};

/// The default socket path (`<run_dir>/control.sock` of the default config).
pub const DEFAULT_SOCKET: &str = "/run/tcmud/control.sock";

/// How long the CLI waits for an answer (a large volume delete takes long).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket (missing file, or refused).
    #[error("tcmud is not running (no control socket listening at {})", path.display())]
    NoDaemon {
        /// Socket path.
        path: PathBuf,
    },
    /// Connecting or talking failed otherwise.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The daemon's answer is not a response of this protocol.
    #[error("control socket {}: unreadable answer: {why}", path.display())]
    BadAnswer {
        /// Socket path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Sends one request and waits for its response.
pub fn call(path: &Path, op: Op) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NoDaemon {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io_err(e)),
    };
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(io_err)?;
    let req = Request {
        v: VERSION,
        id: Some(1),
        op,
    };
    let mut line = serde_json::to_string(&req).map_err(|e| io_err(e.into()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    serde_json::from_str(answer.trim_end()).map_err(|e| ClientError::BadAnswer {
        path: path.to_owned(),
        why: if answer.is_empty() {
            "connection closed without an answer".into()
        } else {
            e.to_string()
        },
    })
}

/// The socket path: `--socket`, else `$TCMUD_CONTROL_SOCKET`, else the default.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("TCMUD_CONTROL_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Where a pool or volume command runs.
#[derive(Debug)]
pub enum Route {
    /// The daemon ran it: its output and whether it found problems.
    Online {
        /// The command's output.
        output: String,
        /// Problems found (exit status 1).
        problems: bool,
    },
    /// The daemon refused it.
    Refused(ErrorBody),
    /// Run it offline: no daemon, or not one of the daemon's pools.
    Offline,
}

/// Asks the daemon to run a pool or volume command; `Offline` when it is
/// not running or does not serve that pool.
pub fn route(path: &Path, op: Op) -> Result<Route, ClientError> {
    let r = match call(path, op) {
        Ok(r) => r,
        Err(ClientError::NoDaemon { .. }) => return Ok(Route::Offline),
        Err(e) => return Err(e),
    };
    Ok(match r.outcome {
        Outcome::Ok(Reply::Command { output, problems }) => Route::Online { output, problems },
        Outcome::Ok(other) => Route::Refused(ErrorBody {
            kind: ErrorKind::BadRequest,
            message: format!("unexpected answer {other:?}"),
        }),
        Outcome::Error(e) if e.kind == ErrorKind::NotHeld => Route::Offline,
        Outcome::Error(e) => Route::Refused(e),
    })
}
