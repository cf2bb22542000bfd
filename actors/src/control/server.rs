//! The control socket's server: a listener thread, one thread per
//! connection (at most [`MAX_CONNECTIONS`]), nothing shared with the data
//! path. A client that sends too much, sends garbage or sends nothing gets an
//! error line and is disconnected; the daemon keeps serving.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::protocol::{parse_request, ErrorKind, Request, Response, MAX_LINE};
use super::ControlError;

/// Connections served at once; more are answered `unavailable` and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// What runs the requests (the daemon, or a test's fake).
pub trait Handler: Send + Sync + 'static {
    /// Runs one request; never panics on bad input.
    fn handle(&self, req: Request) -> Response;
}

/// Socket options.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Socket path.
    pub path: PathBuf,
    /// Mode of the socket file (0600: root, or the daemon's user, only).
    pub mode: u32,
    /// A connection idle for this long is closed.
    pub idle_timeout: Duration,
}

impl ServerOptions {
    /// Defaults for `path`: mode 0600, 30 s idle timeout.
    pub fn new(path: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            path: path.into(),
            mode: 0o600,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A running control socket; dropping it stops the listener and removes
/// the socket file (connections in progress finish their request).
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    /// The listening socket, shut down on drop to wake the blocked accept.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `opts.path` (replacing a stale socket file: the caller holds
    /// the single-instance lock) and serves requests with `handler`.
    pub fn start(opts: ServerOptions, handler: Arc<dyn Handler>) -> Result<Server, ControlError> {
        let path = opts.path.clone();
        let bind_err = |source| ControlError::Bind {
            path: path.clone(),
            source,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(&path).map_err(bind_err)?
            }
            Ok(_) => {
                return Err(bind_err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a socket; not replaced",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        let listener = UnixListener::bind(&path).map_err(bind_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(opts.mode))
            .map_err(bind_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let waker = listener.try_clone().map_err(bind_err)?;
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("tcmud-control".into())
                .spawn(move || accept_loop(&listener, &stop, &active, &handler, &opts))
                .map_err(bind_err)?
        };
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(Server {
            path,
            listener: waker,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept: on Linux, shutting a listening socket
        // down makes accept() fail at once (whatever happened to its path).
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.listener),
            nix::sys::socket::Shutdown::Both,
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: &UnixListener,
    stop: &AtomicBool,
    active: &Arc<AtomicUsize>,
    handler: &Arc<dyn Handler>,
    opts: &ServerOptions,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                // EMFILE and friends: do not spin.
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = send(
                &mut stream,
                &Response::error(
                    None,
                    ErrorKind::Unavailable,
                    format!("too many control connections (at most {MAX_CONNECTIONS})"),
                ),
            );
            continue;
        }
        let (active, handler, timeout) =
            (Arc::clone(active), Arc::clone(handler), opts.idle_timeout);
        let spawned = thread::Builder::new()
            .name("tcmud-control-conn".into())
            .spawn(move || {
                serve_connection(stream, &*handler, timeout);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "control socket: cannot start a connection thread");
        }
    }
}

/// Who may use the socket: root and the daemon's own user.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(cred.uid())
}

fn send(stream: &mut UnixStream, r: &Response) -> io::Result<()> {
    let mut line = r.to_line();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

fn serve_connection(mut stream: UnixStream, handler: &dyn Handler, timeout: Duration) {
    let own = nix::unistd::geteuid().as_raw();
    match peer_uid(&stream) {
        Ok(uid) if peer_allowed(uid, own) => {}
        Ok(uid) => {
            tracing::warn!(uid, "control socket: connection refused (not root)");
            let _ = send(
                &mut stream,
                &Response::error(
                    None,
                    ErrorKind::PermissionDenied,
                    format!("uid {uid} may not control tcmud (root or uid {own} only)"),
                ),
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "control socket: no peer credentials; refused");
            return;
        }
    }
    if stream.set_read_timeout(Some(timeout)).is_err()
        || stream.set_write_timeout(Some(timeout)).is_err()
    {
        return;
    }
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        let read = (&mut reader).take(limit).read_until(b'\n', &mut line);
        let response = match read {
            Ok(0) => return,
            Ok(_) if line.last() != Some(&b'\n') && line.len() > MAX_LINE => {
                let _ = send(
                    &mut stream,
                    &Response::error(
                        None,
                        ErrorKind::TooLarge,
                        format!("request longer than {MAX_LINE} bytes; connection closed"),
                    ),
                );
                return;
            }
            // End of stream without a newline: the last request still counts.
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse_request(&line) {
                    Ok(req) => handler.handle(req),
                    Err(r) => r,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let _ = send(
                    &mut stream,
                    &Response::error(
                        None,
                        ErrorKind::Unavailable,
                        format!("no request for {} s; connection closed", timeout.as_secs()),
                    ),
                );
                return;
            }
            Err(_) => return,
        };
        if send(&mut stream, &response).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_daemons_user_may_connect() {
        assert!(peer_allowed(0, 0));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(1000, 0));
        assert!(!peer_allowed(65534, 1000));
    }
}
