//! The control protocol, version 1: JSON lines over a Unix stream socket.
//!
//! A client writes one request per line and reads one response line per
//! request, in order; a connection may carry any number of requests. Every
//! message carries `"v": 1`. Requests:
//!
//! ```json
//! {"v":1,"id":7,"op":"status"}
//! {"v":1,"id":8,"op":"log_level","args":{"filter":"tcmud=debug,info"}}
//! {"v":1,"id":9,"op":"volume","args":{"snapshot":{"dir":"/srv/pool","volume":"vm1","snapshot":"s1"}}}
//! ```
//!
//! `pool` and `volume` carry the `tcmud pool …` / `tcmud volume …` command
//! as the command line parsed it (see `offline::PoolCommand` and
//! `offline::VolumeCommand`); the daemon runs it on the pool it holds and
//! answers with the exact output the offline command prints. Responses:
//!
//! ```json
//! {"v":1,"id":9,"ok":{"output":"snapshot s1 of vm1 taken\n","problems":false}}
//! {"v":1,"id":9,"error":{"kind":"not_held","message":"…"}}
//! ```
//!
//! `id` is echoed (null when the request had none or could not be parsed).
//! Error kinds are [`ErrorKind`]'s snake_case names; `message` is for humans.
//! A line longer than [`MAX_LINE`] gets `too_large` and the connection is
//! closed; so does a connection idle for longer than the server's timeout.

use serde::{Deserialize, Serialize};
use tcmud_core::latency::HistogramSnapshot;
use tcmud_core::scsi::OpClass;

use crate::offline::{PoolCommand, VolumeCommand};

/// The protocol version this daemon speaks.
pub const VERSION: u32 = 1;

/// Longest request or response line, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// Echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// The operations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum Op {
    /// Devices and pools ([`Status`]).
    Status,
    /// Replace the log filter (`tracing` `EnvFilter` syntax).
    LogLevel {
        /// The new filter, e.g. `info` or `tcmud=debug,warn`.
        filter: String,
    },
    /// A `tcmud pool …` command on a pool the daemon holds.
    Pool(PoolCommand),
    /// A `tcmud volume …` command on a pool the daemon holds.
    Volume(VolumeCommand),
}

/// One response line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// The request's id.
    pub id: Option<u64>,
    /// The result, or why there is none.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A result or an error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok(Reply),
    /// Not done.
    Error(ErrorBody),
}

/// What a successful request returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Reply {
    /// `status`.
    Status(Status),
    /// `pool` and `volume`: what the command printed, and whether it found
    /// problems (exit status 1 offline).
    Command {
        /// The command's output, exactly as offline.
        output: String,
        /// The command found problems.
        problems: bool,
    },
    /// `log_level`.
    Done {
        /// A line saying what changed.
        done: String,
    },
}

/// Why a request was not done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Matchable kind.
    pub kind: ErrorKind,
    /// For humans.
    pub message: String,
}

/// Kinds of errors; stable names on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not JSON, or not a request of this protocol.
    BadRequest,
    /// `v` is not [`VERSION`].
    UnsupportedVersion,
    /// The line is longer than [`MAX_LINE`].
    TooLarge,
    /// The pool directory is not one of the daemon's pools: run the command
    /// offline (the CLI does).
    NotHeld,
    /// The command cannot run on a pool while the daemon serves it.
    NotOnline,
    /// The pool refused (the message is the offline command's error).
    Pool,
    /// The volume is served by a LUN; the message names it.
    Served,
    /// A value is invalid (e.g. a log filter that does not parse).
    InvalidArgument,
    /// The peer is not allowed (not root, not the daemon's user).
    PermissionDenied,
    /// The daemon is shutting down or a part of it did not answer.
    Unavailable,
}

/// `status`: what the daemon serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The daemon's pid.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_s: f64,
    /// Devices served, by minor.
    pub devices: Vec<DeviceStatus>,
    /// Devices of ours not served (setup failed, or the actor gave up).
    pub failed: Vec<FailedStatus>,
    /// Configured pools.
    pub pools: Vec<PoolStatus>,
}

/// One served device.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceStatus {
    /// uio minor (`/dev/uioN`).
    pub minor: u32,
    /// Its configfs name (`user_<hba>/<dev>`).
    pub name: String,
    /// Its dev_config.
    pub dev_config: String,
    /// `serving` or `failed`.
    pub state: String,
    /// Commands in flight now.
    pub in_flight: usize,
    /// Commands completed.
    pub completed: u64,
    /// Completed with a status other than GOOD.
    pub errors: u64,
    /// Data-in bytes (read by the initiator).
    pub bytes_in: u64,
    /// Data-out bytes (written by the initiator).
    pub bytes_out: u64,
    /// Restarts after a panic.
    pub restarts: u64,
    /// Outside ring resets detected.
    pub ring_resets: u64,
    /// Commands not executed because the kernel's `cmd_time_out` passed
    /// (completed with ABORTED COMMAND).
    #[serde(default)]
    pub timed_out: u64,
    /// Task management notifications from the kernel.
    #[serde(default)]
    pub task_management: u64,
    /// Commands a task management request cancelled before they ran.
    #[serde(default)]
    pub aborted: u64,
    /// Commands completed with CHECK CONDITION, by sense key (metrics only).
    #[serde(skip)]
    pub sense_keys: [u64; 16],
    /// Fetch-to-completion latency by operation class (metrics only).
    #[serde(skip)]
    pub latency: Vec<(OpClass, HistogramSnapshot)>,
}

/// A device of ours that is not served.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedStatus {
    /// uio minor.
    pub minor: u32,
    /// Its dev_config.
    pub dev_config: String,
    /// Why it is not served.
    pub why: String,
}

/// One configured pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolStatus {
    /// Name in `thin/<pool>/<volume>`.
    pub name: String,
    /// Directory.
    pub path: String,
    /// Open in the daemon (a device used it, or a command did).
    pub open: bool,
    /// Data capacity in bytes (when open).
    pub capacity_bytes: Option<u64>,
    /// Bytes allocated (when open).
    pub allocated_bytes: Option<u64>,
    /// Allocation passed the low-water mark (when open).
    pub low_water: Option<bool>,
    /// Bytes not allocated (when open).
    #[serde(default)]
    pub free_bytes: Option<u64>,
    /// Commit durations (when open; metrics only).
    #[serde(skip)]
    pub commit_latency: Option<HistogramSnapshot>,
    /// Mapping lookups the memo answered and those that went to the tree
    /// (when open, format 3; metrics only).
    #[serde(skip)]
    pub mapping_lookups: Option<tcmud_core::pool::MemoCounts>,
}

impl Response {
    /// A successful response to `id`.
    pub fn ok(id: Option<u64>, reply: Reply) -> Response {
        Response {
            v: VERSION,
            id,
            outcome: Outcome::Ok(reply),
        }
    }

    /// An error response to `id`.
    pub fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> Response {
        Response {
            v: VERSION,
            id,
            outcome: Outcome::Error(ErrorBody {
                kind,
                message: message.into(),
            }),
        }
    }

    /// The response as one line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"v":{VERSION},"id":null,"error":{{"kind":"unavailable","message":"cannot encode the response: {e}"}}}}"#
            )
        })
    }
}

/// Parses one request line; the error is the response to send.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| Response::error(None, ErrorKind::BadRequest, format!("not JSON: {e}")))?;
    let id = value.get("id").and_then(serde_json::Value::as_u64);
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(Response::error(
                id,
                ErrorKind::UnsupportedVersion,
                format!("protocol version {v} is not supported (this daemon speaks {VERSION})"),
            ))
        }
        None => {
            return Err(Response::error(
                id,
                ErrorKind::BadRequest,
                format!("missing \"v\": every request carries the protocol version ({VERSION})"),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| {
        Response::error(
            id,
            ErrorKind::BadRequest,
            format!("not a valid request: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn requests_round_trip_through_their_wire_form() {
        let r = Request {
            v: 1,
            id: Some(9),
            op: Op::Volume(VolumeCommand::Snapshot {
                dir: PathBuf::from("/srv/pool"),
                volume: "vm1".into(),
                snapshot: "s1".into(),
            }),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":9,"op":"volume","args":{"snapshot":{"dir":"/srv/pool","volume":"vm1","snapshot":"s1"}}}"#
        );
        assert_eq!(parse_request(line.as_bytes()).unwrap(), r);
        let s = parse_request(br#"{"v":1,"op":"status"}"#).unwrap();
        assert_eq!(s.op, Op::Status);
    }

    #[test]
    fn bad_requests_get_typed_errors_with_the_id_when_readable() {
        let kind = |line: &[u8]| match parse_request(line) {
            Err(Response {
                outcome: Outcome::Error(e),
                id,
                ..
            }) => (e.kind, id),
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(b"{nope"), (ErrorKind::BadRequest, None));
        assert_eq!(kind(br#"{"op":"status"}"#), (ErrorKind::BadRequest, None));
        assert_eq!(
            kind(br#"{"v":2,"id":4,"op":"status"}"#),
            (ErrorKind::UnsupportedVersion, Some(4))
        );
        assert_eq!(
            kind(br#"{"v":1,"id":5,"op":"format_disk"}"#),
            (ErrorKind::BadRequest, Some(5))
        );
        assert_eq!(
            kind(br#"{"v":1,"id":6,"op":"status","extra":1}"#),
            (ErrorKind::BadRequest, Some(6))
        );
    }

    #[test]
    fn responses_have_the_documented_shape() {
        let ok = Response::ok(
            Some(1),
            Reply::Command {
                output: "x\n".into(),
                problems: false,
            },
        );
        assert_eq!(
            ok.to_line(),
            r#"{"v":1,"id":1,"ok":{"output":"x\n","problems":false}}"#
        );
        let err = Response::error(None, ErrorKind::NotHeld, "m");
        assert_eq!(
            err.to_line(),
            r#"{"v":1,"id":null,"error":{"kind":"not_held","message":"m"}}"#
        );
        let back: Response = serde_json::from_str(&ok.to_line()).unwrap();
        assert_eq!(back, ok);
    }
}
