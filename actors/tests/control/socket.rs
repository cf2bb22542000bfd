//! The control socket: protocol robustness (garbage, unknown verbs, oversized
//! lines, silent and unprivileged clients), pool and volume commands run on
//! the pool the daemon holds (a live snapshot under writes), and the CLI
//! going online or offline.

use crate::util::{rerun, test_name};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tcmud::backstore::{Backstores, DevConfig, OpenRequest, PoolRegistry, PoolSpec};
use tcmud::control::daemon::{DaemonControl, View};
use tcmud::control::protocol::{
    DeviceStatus, ErrorKind, Outcome, Reply, Request, Response, MAX_LINE,
};
use tcmud::control::server::{Handler, Server, ServerOptions};
use tcmud::supervisor::ControlView;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

/// Answers every request with its id, so tests see which were handled.
struct Echo;

impl Handler for Echo {
    fn handle(&self, req: Request) -> Response {
        Response::ok(
            req.id,
            Reply::Done {
                done: format!("{:?}", req.op),
            },
        )
    }
}

fn start(dir: &Path, handler: Arc<dyn Handler>, idle: Duration, mode: u32) -> Server {
    let mut opts = ServerOptions::new(dir.join("control.sock"));
    opts.idle_timeout = idle;
    opts.mode = mode;
    Server::start(opts, handler).unwrap()
}

fn connect(s: &Server) -> (UnixStream, BufReader<UnixStream>) {
    let c = UnixStream::connect(s.path()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = BufReader::new(c.try_clone().unwrap());
    (c, r)
}

fn ask(c: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &[u8]) -> Response {
    c.write_all(line).unwrap();
    c.write_all(b"\n").unwrap();
    let mut answer = String::new();
    r.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
}

fn kind(r: &Response) -> Option<ErrorKind> {
    match &r.outcome {
        Outcome::Error(e) => Some(e.kind),
        Outcome::Ok(_) => None,
    }
}

#[test]
fn garbage_and_unknown_verbs_get_errors_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Arc::new(Echo), Duration::from_secs(30), 0o600);
    let (mut c, mut r) = connect(&s);
    assert_eq!(
        kind(&ask(&mut c, &mut r, b"not json")),
        Some(ErrorKind::BadRequest)
    );
    let unknown = ask(&mut c, &mut r, br#"{"v":1,"id":3,"op":"erase_everything"}"#);
    assert_eq!(
        (kind(&unknown), unknown.id),
        (Some(ErrorKind::BadRequest), Some(3))
    );
    let old = ask(&mut c, &mut r, br#"{"v":7,"id":4,"op":"status"}"#);
    assert_eq!(kind(&old), Some(ErrorKind::UnsupportedVersion));
    let ok = ask(&mut c, &mut r, br#"{"v":1,"id":5,"op":"status"}"#);
    assert_eq!((kind(&ok), ok.id), (None, Some(5)));
}

#[test]
fn an_oversized_request_is_refused_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Arc::new(Echo), Duration::from_secs(30), 0o600);
    let (mut c, mut r) = connect(&s);
    let big = vec![b'x'; MAX_LINE + 10];
    // The server answers after MAX_LINE + 1 bytes and closes; the rest of
    // the write may fail with EPIPE.
    let _ = c.write_all(&big);
    let mut answer = String::new();
    r.read_line(&mut answer).unwrap();
    let resp: Response = serde_json::from_str(&answer).unwrap();
    assert_eq!(kind(&resp), Some(ErrorKind::TooLarge));
    let mut rest = Vec::new();
    assert_eq!(
        r.read_to_end(&mut rest).unwrap_or(0),
        0,
        "connection closed"
    );
    let (mut c2, mut r2) = connect(&s);
    assert_eq!(
        kind(&ask(&mut c2, &mut r2, br#"{"v":1,"op":"status"}"#)),
        None
    );
}

#[test]
fn a_client_that_never_sends_is_dropped_and_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        Arc::new(Echo),
        Duration::from_millis(300),
        0o600,
    );
    let (_silent, mut silent_r) = connect(&s);
    // Another client is served while the silent one waits.
    let (mut c, mut r) = connect(&s);
    assert_eq!(
        kind(&ask(&mut c, &mut r, br#"{"v":1,"op":"status"}"#)),
        None
    );
    let mut answer = String::new();
    silent_r.read_line(&mut answer).unwrap();
    let resp: Response = serde_json::from_str(&answer).unwrap();
    assert_eq!(kind(&resp), Some(ErrorKind::Unavailable), "{answer}");
    let mut rest = Vec::new();
    assert_eq!(silent_r.read_to_end(&mut rest).unwrap_or(0), 0);
}

/// Run as the client of `non_root_connections_are_refused` (as uid 65534).
#[test]
fn non_root_client_probe() {
    let Ok(path) = std::env::var("TCMUD_TEST_CONTROL_PROBE") else {
        return;
    };
    let out = match UnixStream::connect(&path) {
        Err(e) => format!("connect: {}", e.kind()),
        Ok(mut c) => {
            let _ = c.write_all(b"{\"v\":1,\"op\":\"status\"}\n");
            let mut answer = String::new();
            let _ = BufReader::new(c).read_line(&mut answer);
            answer
        }
    };
    std::fs::write(std::env::var("TCMUD_TEST_CONTROL_OUT").unwrap(), out).unwrap();
}

#[test]
fn non_root_connections_are_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let probe = |mode: u32| -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let s = start(dir.path(), Arc::new(Echo), Duration::from_secs(30), mode);
        let out = dir.path().join("out");
        std::fs::write(&out, "").unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let status = rerun(&test_name!(non_root_client_probe))
            .env("TCMUD_TEST_CONTROL_PROBE", s.path())
            .env("TCMUD_TEST_CONTROL_OUT", &out)
            .uid(65534)
            .gid(65534)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(&out).unwrap()
    };
    // The default mode keeps others out at connect().
    assert_eq!(probe(0o600), "connect: permission denied");
    // Even with the socket opened up, the peer's uid is checked.
    let answer = probe(0o666);
    let resp: Response = serde_json::from_str(&answer).unwrap();
    assert_eq!(kind(&resp), Some(ErrorKind::PermissionDenied), "{answer}");
}

use std::os::unix::process::CommandExt;

// ---- the daemon's handler over a real pool ----

struct FakeView {
    registry: Arc<PoolRegistry>,
    devices: Mutex<Vec<DeviceStatus>>,
    backstores: Backstores,
}

impl View for FakeView {
    fn view(&self) -> Result<ControlView, String> {
        Ok(ControlView {
            devices: self.devices.lock().unwrap().clone(),
            failed: Vec::new(),
            registries: vec![Arc::clone(&self.registry)],
            backstores: self.backstores.clone(),
        })
    }
}

struct Shared(Arc<FakeView>);

impl View for Shared {
    fn view(&self) -> Result<ControlView, String> {
        self.0.view()
    }
}

// Fields drop in order: the server before the directory holding its socket.
struct Daemon {
    server: Server,
    pool_dir: PathBuf,
    view: Arc<FakeView>,
    _dir: tempfile::TempDir,
}

fn daemon() -> Daemon {
    daemon_with(tcmud::config::Subtypes::default())
}

fn daemon_with(subtypes: tcmud::config::Subtypes) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let pool_dir = dir.path().join("pool");
    let cfg = PoolConfig {
        chunk_size: 64 << 10,
        capacity_bytes: 256 << 20,
        low_water_pct: 90,
    };
    {
        let p = Pool::create(&pool_dir, &cfg).unwrap();
        p.create_volume("vol", 64 << 20, 512).unwrap();
        p.close().unwrap();
    }
    let registry = Arc::new(PoolRegistry::new(vec![PoolSpec {
        name: "p".into(),
        path: pool_dir.clone(),
        config: cfg,
        auto_create: false,
        options: PoolOptions::default(),
    }]));
    let view = Arc::new(FakeView {
        registry,
        devices: Mutex::new(Vec::new()),
        backstores: Backstores::new(),
    });
    let handler = DaemonControl::new(
        Box::new(Shared(Arc::clone(&view))),
        None,
        dir.path().join("cfs"),
    )
    .with_subtypes(subtypes);
    let server = start(
        dir.path(),
        Arc::new(handler),
        Duration::from_secs(30),
        0o600,
    );
    Daemon {
        server,
        pool_dir,
        view,
        _dir: dir,
    }
}

fn tcmud(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .args(args)
        .env("TCMUD_CONTROL_SOCKET", d.server.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_live_snapshot_holds_every_acknowledged_write_and_none_issued_after_it() {
    let d = daemon();
    let pool = d.view.registry.pool("p", false).unwrap();
    let vol = pool.open_volume("vol").unwrap();
    let dir = d.pool_dir.to_str().unwrap().to_owned();
    // A writer stamps block k with sequence number s (each write
    // acknowledged when write() returns), round-robin over 256 blocks.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (vol, acked, stop) = (Arc::clone(&vol), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut s = 1u64;
            while !stop.load(Ordering::SeqCst) {
                let mut block = [0u8; 512];
                block[..8].copy_from_slice(&s.to_le_bytes());
                vol.write(s % 256 * 8, &block, false).unwrap();
                acked.store(s, Ordering::SeqCst);
                s += 1;
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 1000 {
        std::thread::yield_now();
    }
    let before = acked.load(Ordering::SeqCst);
    let (code, out, err) = tcmud(&d, &["volume", "snapshot", &dir, "vol", "snap"]);
    let after = acked.load(Ordering::SeqCst) + 1;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "snapshot snap of vol taken\n", "")
    );
    // Writes go on after the snapshot.
    let target = after + 2000;
    while acked.load(Ordering::SeqCst) < target {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let snap = pool.open_volume("snap").unwrap();
    for k in 0..256u64 {
        let mut block = [0u8; 512];
        snap.read(k * 8, &mut block).unwrap();
        let s = u64::from_le_bytes(block[..8].try_into().unwrap());
        // The last write to block k acknowledged before the request:
        let last_before = (before / 256) * 256 + k;
        let last_before = if last_before > before {
            last_before - 256
        } else {
            last_before
        };
        assert!(
            s >= last_before,
            "block {k}: snapshot has write {s}, but write {last_before} was acknowledged before it"
        );
        assert!(
            s <= after,
            "block {k}: snapshot has write {s}, issued after the snapshot returned ({after})"
        );
        assert_eq!(s % 256, k % 256, "block {k} holds another block's write");
    }
}

#[actix::test]
async fn commands_on_an_open_volume_go_through_its_backstore_actor() {
    let d = daemon();
    let dir = d.pool_dir.to_str().unwrap().to_owned();
    let key = DevConfig::Thin {
        pool: "p".into(),
        volume: "vol".into(),
    };
    // A device serves vol (its backstore actor knows it; the supervisor's
    // device list is empty here).
    let served = d
        .view
        .backstores
        .open(OpenRequest {
            config: key.clone(),
            options: Default::default(),
            size_bytes: 64 << 20,
            block_size: 512,
            registry: Arc::clone(&d.view.registry),
            may_create: false,
            file_roots: Vec::new(),
            minor: Some(5),
        })
        .await
        .unwrap();
    let (code, out, err) = tcmud(&d, &["volume", "snapshot", &dir, "vol", "snap"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "snapshot snap of vol taken\n", "")
    );
    let (code, _, err) = tcmud(&d, &["volume", "delete", &dir, "vol"]);
    assert_eq!(code, 2);
    assert!(err.contains("served by /dev/uio5"), "{err}");
    // The snapshot is not open: cloned on the pool.
    let (code, out, _) = tcmud(&d, &["volume", "clone", &dir, "snap", "c1"]);
    assert_eq!((code, out.as_str()), (0, "cloned snap as c1\n"));
    // Once the device is gone, the volume is deleted.
    let actor = served.actor().clone();
    drop(served);
    while actor.connected() {
        tokio::task::yield_now().await;
    }
    assert!(d.view.backstores.get(&key).is_none());
    let (code, out, err) = tcmud(&d, &["volume", "delete", &dir, "vol"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.starts_with("deleted vol; its ") && out.contains("freed in the background"),
        "{out}"
    );
    let (code, out, _) = tcmud(&d, &["volume", "list", &dir]);
    assert_eq!(code, 0);
    assert!(!out.lines().any(|l| l.starts_with("vol ")), "{out}");
}

#[test]
fn served_volumes_cannot_be_deleted_and_offline_only_commands_are_refused() {
    let d = daemon();
    let dir = d.pool_dir.to_str().unwrap().to_owned();
    d.view.devices.lock().unwrap().push(DeviceStatus {
        minor: 7,
        name: "user_1/lun".into(),
        dev_config: "thin/p/vol".into(),
        state: "serving".into(),
        ..DeviceStatus::default()
    });
    let (code, _, err) = tcmud(&d, &["volume", "delete", &dir, "vol"]);
    assert_eq!(code, 2);
    assert!(err.contains("served by /dev/uio7"), "{err}");
    // It is still there.
    let (code, out, _) = tcmud(&d, &["volume", "list", &dir]);
    assert_eq!(code, 0);
    assert!(out.contains("vol"), "{out}");
    // Shrinking a served volume is refused; check needs the pool at rest.
    let (code, _, err) = tcmud(
        &d,
        &["volume", "resize", &dir, "vol", "--size", "1MiB", "--force"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("cannot shrink"), "{err}");
    let (code, _, err) = tcmud(&d, &["pool", "check", &dir]);
    assert_eq!(code, 2);
    assert!(err.contains("open in the running tcmud"), "{err}");
}

#[test]
fn commands_run_online_give_the_offline_output() {
    let d = daemon();
    let dir = d.pool_dir.to_str().unwrap().to_owned();
    let (code, out, err) = tcmud(&d, &["volume", "create", &dir, "v2", "--size", "8MiB"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "created volume v2 (8 MiB)\n", "")
    );
    // The daemon holds the pool: offline would fail on its lock.
    let (code, _, err) = tcmud(&d, &["volume", "list", &dir, "--offline"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = tcmud(&d, &["volume", "list", &dir, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v2", "vol"]);
    // status names the pool, open, with its capacity.
    let (code, out, _) = tcmud(&d, &["status", "--json"]);
    assert_eq!(code, 0);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["pools"][0]["name"], "p");
    assert_eq!(s["pools"][0]["open"], true);
    assert_eq!(s["pools"][0]["capacity_bytes"], 256u64 << 20);
}

#[test]
fn without_a_daemon_the_commands_run_offline() {
    let d = daemon();
    let dir = d.pool_dir.to_str().unwrap().to_owned();
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .args(["volume", "list", &dir])
        .env("TCMUD_CONTROL_SOCKET", other.path().join("none.sock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("vol"));
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .args(["status"])
        .env("TCMUD_CONTROL_SOCKET", other.path().join("none.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcmud is not running"));
}

// ---- metrics ----

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_expose_device_counters_and_pool_gauges() {
    use tcmud::control::metrics::{DaemonCollector, MetricsServer};
    let d = daemon();
    // The pool is open in the daemon (a device or a command opened it).
    d.view.registry.pool("p", false).unwrap();
    d.view.devices.lock().unwrap().push(DeviceStatus {
        minor: 7,
        name: "user_1/lun".into(),
        dev_config: "thin/p/vol".into(),
        state: "serving".into(),
        completed: 42,
        errors: 3,
        bytes_in: 4096,
        bytes_out: 8192,
        in_flight: 2,
        timed_out: 1,
        task_management: 4,
        aborted: 3,
        sense_keys: {
            let mut k = [0; 16];
            k[5] = 2; // ILLEGAL REQUEST
            k[6] = 1; // UNIT ATTENTION
            k
        },
        latency: {
            let reads = tcmud_core::latency::LatencyHistogram::default();
            reads.record(Duration::from_micros(40));
            reads.record(Duration::from_micros(700));
            reads.record(Duration::from_millis(30));
            vec![
                (tcmud_core::scsi::OpClass::Read, reads.snapshot()),
                (
                    tcmud_core::scsi::OpClass::Flush,
                    tcmud_core::latency::LatencyHistogram::default().snapshot(),
                ),
            ]
        },
        ..DeviceStatus::default()
    });
    // A commit, so that the pool's histogram has one.
    let pool = d.view.registry.held("p").unwrap();
    pool.flush().unwrap();
    let collector = DaemonCollector::new(Arc::new(Shared(Arc::clone(&d.view))));
    let m = MetricsServer::start("127.0.0.1:0".parse().unwrap(), collector).unwrap();
    let text = http_get(m.addr(), "/metrics");
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
    assert!(text.contains("application/openmetrics-text"), "{text}");
    let labels = r#"{minor="7",device="user_1/lun",dev_config="thin/p/vol"}"#;
    for line in [
        format!("tcmud_device_commands_total{labels} 42"),
        format!("tcmud_device_errors_total{labels} 3"),
        format!("tcmud_device_read_bytes_total{labels} 4096"),
        format!("tcmud_device_written_bytes_total{labels} 8192"),
        format!("tcmud_device_in_flight{labels} 2"),
        "tcmud_devices_failed 0".to_string(),
        "tcmud_up 1".to_string(),
        format!(r#"tcmud_pool_capacity_bytes{{pool="p"}} {}"#, 256u64 << 20),
        r#"tcmud_pool_open{pool="p"} 1"#.to_string(),
        r#"tcmud_pool_low_water{pool="p"} 0"#.to_string(),
        format!(r#"tcmud_pool_free_bytes{{pool="p"}} {}"#, 256u64 << 20),
        "# TYPE tcmud_device_commands counter".to_string(),
        format!("tcmud_device_timed_out_commands_total{labels} 1"),
        format!("tcmud_device_task_management_requests_total{labels} 4"),
        format!("tcmud_device_aborted_commands_total{labels} 3"),
        r#"tcmud_device_check_conditions_total{minor="7",device="user_1/lun",dev_config="thin/p/vol",sense_key="illegal_request"} 2"#.to_string(),
        r#"tcmud_device_check_conditions_total{minor="7",device="user_1/lun",dev_config="thin/p/vol",sense_key="unit_attention"} 1"#.to_string(),
        "# TYPE tcmud_device_command_duration_seconds histogram".to_string(),
        "# UNIT tcmud_device_command_duration_seconds seconds".to_string(),
        r#"tcmud_device_command_duration_seconds_bucket{le="0.00005",minor="7",device="user_1/lun",dev_config="thin/p/vol",op="read"} 1"#.to_string(),
        r#"tcmud_device_command_duration_seconds_bucket{le="0.001",minor="7",device="user_1/lun",dev_config="thin/p/vol",op="read"} 2"#.to_string(),
        r#"tcmud_device_command_duration_seconds_bucket{le="+Inf",minor="7",device="user_1/lun",dev_config="thin/p/vol",op="read"} 3"#.to_string(),
        r#"tcmud_device_command_duration_seconds_count{minor="7",device="user_1/lun",dev_config="thin/p/vol",op="read"} 3"#.to_string(),
        r#"tcmud_device_command_duration_seconds_count{minor="7",device="user_1/lun",dev_config="thin/p/vol",op="flush"} 0"#.to_string(),
        "# TYPE tcmud_pool_commit_duration_seconds histogram".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("tcmud_uptime_seconds "), "{text}");
    // Every sense key not seen is absent; the pool's commits are counted.
    assert!(!text.contains(r#"sense_key="medium_error""#), "{text}");
    let commits = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"tcmud_pool_commit_duration_seconds_count{pool="p"} "#))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(commits.is_some_and(|n| n >= 1), "{text}");
    // Counters follow the devices between scrapes.
    d.view.devices.lock().unwrap()[0].completed = 50;
    // A write (its chunk's mapping from the tree) and two reads of it (the
    // memo's): the mapping lookups are counted.
    {
        use tcmud_core::backend::BlockBackend;
        pool.create_volume("looked-up", 1 << 20, 512).unwrap();
        let v = pool.open_volume("looked-up").unwrap();
        v.write(0, &[5u8; 4096], false).unwrap();
        let mut b = [0u8; 4096];
        v.read(0, &mut b).unwrap();
        v.read(0, &mut b).unwrap();
        assert_eq!(b, [5u8; 4096]);
    }
    let text = http_get(m.addr(), "/metrics");
    assert!(
        text.contains(&format!("tcmud_device_commands_total{labels} 50")),
        "{text}"
    );
    let lookups = |result: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    r#"tcmud_pool_mapping_lookups_total{{pool="p",result="{result}"}} "#
                ))
            })
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(lookups("memo").is_some_and(|n| n >= 2), "{text}");
    assert!(lookups("tree").is_some_and(|n| n >= 1), "{text}");
    let other = http_get(m.addr(), "/other");
    assert!(
        other.lines().next().is_some_and(|l| l.contains(" 404 ")),
        "{other}"
    );
}

#[test]
fn a_renamed_thin_subtype_still_marks_its_volumes_served() {
    let d = daemon_with(tcmud::config::Subtypes {
        thin: Some("tcmud-thin".into()),
        ..tcmud::config::Subtypes::default()
    });
    let dir = d.pool_dir.to_str().unwrap().to_owned();
    d.view.devices.lock().unwrap().push(DeviceStatus {
        minor: 3,
        name: "user_2/lun".into(),
        dev_config: "tcmud-thin/p/vol;ro".into(),
        state: "serving".into(),
        ..DeviceStatus::default()
    });
    let (code, _, err) = tcmud(
        &d,
        &["volume", "resize", &dir, "vol", "--size", "1MiB", "--force"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("served by /dev/uio3"), "{err}");
}
