//! The CLI commands that reach the daemon: `status`, `log-level`, and the
//! pool and volume commands, which run in the daemon when it serves the
//! pool and offline otherwise. Exit codes as offline: 0 done, 1 problems
//! found, 2 error.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::client::{self, ClientError, Route};
use super::protocol::{Op, Outcome, Reply, Status};
use crate::cli::{PoolArgs, Via, VolumeArgs};
use crate::offline::{self, size::human, PoolDir};

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "tcmud: {msg}");
    ExitCode::from(2)
}

fn online(output: &str, problems: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if out.write_all(output.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(u8::from(problems))
}

/// `tcmud pool …`
pub fn pool(args: PoolArgs) -> ExitCode {
    let opts = args.pool_options();
    run_somewhere(args.cmd, args.offline, &args.via, Op::Pool, |c, out| {
        offline::run_pool_opts(c, &opts, out)
    })
}

/// `tcmud volume …`
pub fn volume(args: VolumeArgs) -> ExitCode {
    let opts = args.pool_options();
    run_somewhere(args.cmd, args.offline, &args.via, Op::Volume, |c, out| {
        offline::run_volume_opts(c, &opts, out)
    })
}

/// Runs `cmd` in the daemon when it serves the pool, else (or with
/// `--offline`) here with `run_offline`.
fn run_somewhere<C: PoolDir + Clone>(
    cmd: C,
    force_offline: bool,
    via: &Via,
    op: fn(C) -> Op,
    run_offline: impl Fn(&C, &mut dyn Write) -> Result<offline::Outcome, offline::OfflineError>,
) -> ExitCode {
    let here = || offline::exit_code(run_offline(&cmd, &mut std::io::stdout().lock()));
    if force_offline {
        return here();
    }
    let absolute = match cmd.clone().absolute() {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", cmd.dir().display())),
    };
    match client::route(&client::socket_path(via.socket.as_deref()), op(absolute)) {
        Ok(Route::Online { output, problems }) => online(&output, problems),
        Ok(Route::Refused(e)) => fail(e.message),
        Ok(Route::Offline) => here(),
        Err(e) => fail(unreachable_daemon(&e)),
    }
}

fn unreachable_daemon(e: &ClientError) -> String {
    format!("{e} (use --offline to open the pool directly when no daemon serves it)")
}

/// `tcmud status`
pub fn status(json: bool, via: &Via) -> ExitCode {
    let r = match client::call(&client::socket_path(via.socket.as_deref()), Op::Status) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match r.outcome {
        Outcome::Ok(Reply::Status(s)) => {
            let mut out = std::io::stdout().lock();
            let written = if json {
                serde_json::to_string_pretty(&s)
                    .map_err(std::io::Error::from)
                    .and_then(|t| writeln!(out, "{t}"))
            } else {
                status_text(&mut out, &s)
            };
            if written.is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Outcome::Ok(other) => fail(format!("unexpected answer {other:?}")),
        Outcome::Error(e) => fail(e.message),
    }
}

/// `tcmud log-level FILTER`
pub fn log_level(filter: String, via: &Via) -> ExitCode {
    let path = client::socket_path(via.socket.as_deref());
    match client::call(&path, Op::LogLevel { filter }) {
        Ok(r) => match r.outcome {
            Outcome::Ok(Reply::Done { done }) => {
                let _ = writeln!(std::io::stdout(), "{done}");
                ExitCode::SUCCESS
            }
            Outcome::Ok(other) => fail(format!("unexpected answer {other:?}")),
            Outcome::Error(e) => fail(e.message),
        },
        Err(e) => fail(e),
    }
}

/// `tcmud status` as text.
pub fn status_text(out: &mut dyn Write, s: &Status) -> std::io::Result<()> {
    writeln!(out, "tcmud pid {}, up {:.0} s", s.pid, s.uptime_s)?;
    writeln!(
        out,
        "devices: {} served, {} failed",
        s.devices.len(),
        s.failed.len()
    )?;
    for d in &s.devices {
        writeln!(
            out,
            "  uio{:<4} {:<8} {}  in flight {}, completed {}, errors {}, read {}, written {}, restarts {}, ring resets {}  ({})",
            d.minor,
            d.state,
            d.dev_config,
            d.in_flight,
            d.completed,
            d.errors,
            human(d.bytes_in),
            human(d.bytes_out),
            d.restarts,
            d.ring_resets,
            d.name
        )?;
    }
    for f in &s.failed {
        writeln!(
            out,
            "  uio{:<4} failed   {}  {}",
            f.minor, f.dev_config, f.why
        )?;
    }
    writeln!(out, "pools:")?;
    for p in &s.pools {
        match (p.capacity_bytes, p.allocated_bytes) {
            (Some(c), Some(a)) => writeln!(
                out,
                "  {:<12} {}  allocated {} of {}{}",
                p.name,
                p.path,
                human(a),
                human(c),
                if p.low_water == Some(true) {
                    "  (past the low-water mark)"
                } else {
                    ""
                }
            )?,
            _ => writeln!(out, "  {:<12} {}  (not open)", p.name, p.path)?,
        }
    }
    Ok(())
}

/// Whether `path` is the socket of a running daemon (for tests and scripts).
pub fn daemon_listening(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}
