//! The config as serde reads it (with spans), and its validation into [`DaemonConfig`].

use super::{
    check_absolute, check_log_level, ByteSize, DaemonConfig, LogFormat, ModuleParams, PoolConfig,
    Problem, RecoveryPolicy, Subtypes,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use tcmud_core::pool::pagestore::DEFAULT_METADATA_CACHE;
use tcmud_core::scsi::{AluaConfig, AluaPeer, NonOwner};
use toml::Spanned;

/// Seconds a device's drain waits for running backstore I/O by default.
pub(super) const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;
const MIN_CHUNK: u64 = 4 << 10;
use tcmud_core::pool::pagestore::MIN_METADATA_CACHE;
const MAX_CHUNK: u64 = 1 << 20;
/// Upper bound of the thread counts (`device_threads`, `io_threads`, ...).
const MAX_THREADS: u32 = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    pool: Option<Vec<RawPool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    recovery: Option<RecoveryPolicy>,
    netlink_replies: Option<bool>,
    log_level: Option<Spanned<String>>,
    log_format: Option<LogFormat>,
    sys_root: Option<Spanned<PathBuf>>,
    configfs_root: Option<Spanned<PathBuf>>,
    dev_root: Option<Spanned<PathBuf>>,
    run_dir: Option<Spanned<PathBuf>>,
    file_roots: Option<Vec<Spanned<PathBuf>>>,
    drain_timeout: Option<Spanned<u64>>,
    metrics: Option<Spanned<String>>,
    dbus: Option<bool>,
    subtypes: Option<RawSubtypes>,
    module_params: Option<ModuleParams>,
    device_threads: Option<Spanned<u32>>,
    io_threads: Option<Spanned<u32>>,
    io_jobs_per_backstore: Option<Spanned<u32>>,
    nice: Option<Spanned<i64>>,
    alua: Option<Spanned<RawAlua>>,
}

/// `[daemon.alua]`: this daemon's port among those exporting the same RBD
/// images (docs/alua.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlua {
    group: u16,
    relative_port: u16,
    #[serde(default)]
    peers: Vec<RawAluaPeer>,
    transition_secs: Option<u8>,
    /// The state of the groups that do not own the image's lock.
    non_owner: Option<NonOwner>,
    /// The group reported preferred (PREF).
    preferred_group: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAluaPeer {
    group: u16,
    relative_port: u16,
}

/// IMPLICIT TRANSITION TIME reported by default: the cluster's default
/// watch timeout (a dead owner's lock is broken after it).
const DEFAULT_TRANSITION_SECS: u8 = 30;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubtypes {
    thin: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    rbd: Option<Spanned<String>>,
}

/// Longest subtype accepted.
const MAX_SUBTYPE: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    path: Spanned<PathBuf>,
    chunk_size: Option<Spanned<ByteSize>>,
    capacity: Option<Spanned<ByteSize>>,
    low_water_pct: Option<Spanned<u8>>,
    auto_create: Option<bool>,
    metadata_cache: Option<Spanned<ByteSize>>,
    sparse_data: Option<bool>,
}

/// `line L, column C` of a byte offset (1-based), or `fallback` without a span.
fn locate(text: &str, span: Option<Range<usize>>, fallback: &str) -> String {
    let Some(start) = span.map(|s| s.start) else {
        return fallback.to_owned();
    };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

struct Checker<'a> {
    text: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn bad(&mut self, span: Option<Range<usize>>, field: &str, why: String) {
        let location = locate(self.text, span, field);
        self.problems.push(Problem {
            location,
            field: field.to_owned(),
            why,
        });
    }

    fn path(&mut self, v: Option<Spanned<PathBuf>>, default: &str, field: &str) -> PathBuf {
        match v {
            None => PathBuf::from(default),
            Some(s) => {
                let loc = locate(self.text, Some(s.span()), field);
                check_absolute(s.get_ref(), &loc, field, self.problems);
                s.into_inner()
            }
        }
    }
}

impl RawConfig {
    /// Validates every field, pushing one [`Problem`] per bad value.
    pub(super) fn check(self, text: &str, problems: &mut Vec<Problem>) -> DaemonConfig {
        let mut c = Checker { text, problems };
        let d = self.daemon;
        let log_level = match d.log_level {
            None => "info".to_owned(),
            Some(s) => {
                let loc = locate(text, Some(s.span()), "daemon.log_level");
                check_log_level(s.get_ref(), &loc, "daemon.log_level", c.problems);
                s.into_inner()
            }
        };
        let sys_root = c.path(d.sys_root, "/sys", "daemon.sys_root");
        let configfs_root = c.path(
            d.configfs_root,
            "/sys/kernel/config",
            "daemon.configfs_root",
        );
        let dev_root = c.path(d.dev_root, "/dev", "daemon.dev_root");
        let run_dir = c.path(d.run_dir, "/run/tcmud", "daemon.run_dir");
        let file_roots = d
            .file_roots
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| c.path(Some(r), "", &format!("daemon.file_roots[{i}]")))
            .collect();
        let pools = match self.pool {
            None => vec![default_pool()],
            Some(list) => {
                let mut names = HashSet::new();
                let mut paths = HashSet::new();
                let mut out = Vec::new();
                for (i, p) in list.into_iter().enumerate() {
                    out.push(check_pool(&mut c, i, p, &mut names, &mut paths));
                }
                out
            }
        };
        let metrics = match d.metrics {
            None => None,
            Some(s) => {
                let span = Some(s.span());
                match s.get_ref().parse::<std::net::SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(e) => {
                        c.bad(
                            span,
                            "daemon.metrics",
                            format!(
                                "{:?} is not an address and port like \"127.0.0.1:9771\": {e}",
                                s.get_ref()
                            ),
                        );
                        None
                    }
                }
            }
        };
        let subtypes = check_subtypes(&mut c, d.subtypes.unwrap_or_default());
        let alua = d.alua.and_then(|a| {
            let span = Some(a.span());
            let a = a.into_inner();
            let cfg = AluaConfig {
                group: a.group,
                relative_port: a.relative_port,
                peers: a
                    .peers
                    .iter()
                    .map(|p| AluaPeer {
                        group: p.group,
                        relative_port: p.relative_port,
                    })
                    .collect(),
                transition_secs: a.transition_secs.unwrap_or(DEFAULT_TRANSITION_SECS),
                non_owner: a.non_owner.unwrap_or_default(),
                preferred: a.preferred_group,
            };
            match cfg.validate() {
                Ok(()) => Some(cfg),
                Err(why) => {
                    c.bad(span, "daemon.alua", why);
                    None
                }
            }
        });
        let drain_timeout = match d.drain_timeout.map(Spanned::into_inner) {
            None => Some(Duration::from_secs(DEFAULT_DRAIN_TIMEOUT_SECS)),
            Some(0) => None,
            Some(n) => Some(Duration::from_secs(n)),
        };
        let mut threads = |v: Option<Spanned<u32>>, field: &str| -> usize {
            let Some(v) = v else { return 0 };
            if v.get_ref() > &MAX_THREADS {
                c.bad(
                    Some(v.span()),
                    field,
                    format!(
                        "{} is more than {MAX_THREADS} (0: from the core count)",
                        v.get_ref()
                    ),
                );
            }
            v.into_inner() as usize
        };
        let device_threads = threads(d.device_threads, "daemon.device_threads");
        let io_threads = threads(d.io_threads, "daemon.io_threads");
        let io_jobs_per_backstore =
            threads(d.io_jobs_per_backstore, "daemon.io_jobs_per_backstore");
        let nice = match d.nice {
            None => crate::priority::DEFAULT_NICE,
            Some(v) => match i8::try_from(*v.get_ref()) {
                Ok(n) if (-20..=19).contains(&n) => n,
                _ => {
                    c.bad(
                        Some(v.span()),
                        "daemon.nice",
                        format!("{} is not a nice value (-20 to 19)", v.get_ref()),
                    );
                    0
                }
            },
        };
        DaemonConfig {
            metrics,
            nice,
            dbus: d.dbus.unwrap_or(true),
            drain_timeout,
            device_threads,
            io_threads,
            io_jobs_per_backstore,
            recovery: d.recovery.unwrap_or_default(),
            netlink_replies: d.netlink_replies.unwrap_or(false),
            log_level,
            log_format: d.log_format.unwrap_or_default(),
            sys_root,
            configfs_root,
            dev_root,
            run_dir,
            file_roots,
            subtypes,
            module_params: d.module_params.unwrap_or_default(),
            pools,
            alua,
        }
    }
}

/// `[daemon.subtypes]`: each a lowercase word (`a-z`, `0-9`, `-`, `_`,
/// `.`; no `/`), `""` to turn the kind off; they must differ.
fn check_subtypes(c: &mut Checker<'_>, raw: RawSubtypes) -> Subtypes {
    let defaults = Subtypes::default();
    let mut one = |v: Option<Spanned<String>>, default: Option<String>, field: &str| {
        let Some(v) = v else {
            return default;
        };
        let span = v.span();
        let name = v.into_inner();
        if name.is_empty() {
            return None;
        }
        let ok = name.len() <= MAX_SUBTYPE
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            c.bad(
                Some(span),
                field,
                format!("{name:?} is not a subtype: use up to {MAX_SUBTYPE} of a-z 0-9 - _ . (\"\" turns it off)"),
            );
        }
        Some(name)
    };
    let thin = one(raw.thin, defaults.thin, "daemon.subtypes.thin");
    let file = one(raw.file, defaults.file, "daemon.subtypes.file");
    let rbd = one(raw.rbd, defaults.rbd, "daemon.subtypes.rbd");
    for (a, b, x, y) in [
        ("thin", "file", &thin, &file),
        ("thin", "rbd", &thin, &rbd),
        ("file", "rbd", &file, &rbd),
    ] {
        if x.is_some() && x == y {
            c.bad(
                None,
                "daemon.subtypes",
                format!("{a} and {b} both use {:?}", x.as_deref().unwrap_or("")),
            );
        }
    }
    Subtypes { thin, file, rbd }
}

fn default_pool() -> PoolConfig {
    PoolConfig {
        name: "default".into(),
        path: PathBuf::from("/var/lib/tcmud/pools/default"),
        chunk_size: 64 << 10,
        capacity_bytes: 16 << 30,
        low_water_pct: 90,
        auto_create: false,
        metadata_cache: DEFAULT_METADATA_CACHE,
        sparse_data: false,
    }
}

fn check_pool(
    c: &mut Checker<'_>,
    i: usize,
    p: RawPool,
    names: &mut HashSet<String>,
    paths: &mut HashSet<PathBuf>,
) -> PoolConfig {
    let d = default_pool();
    let f = |n: &str| format!("pool[{i}].{n}");
    let name_span = p.name.span();
    let name = p.name.into_inner();
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        c.bad(
            Some(name_span.clone()),
            &f("name"),
            format!("{name:?}: a pool name must be non-empty, without '/' or spaces"),
        );
    } else if !names.insert(name.clone()) {
        c.bad(
            Some(name_span),
            &f("name"),
            format!("pool name {name:?} is used twice"),
        );
    }
    let path_span = p.path.span();
    let path = c.path(Some(p.path), "", &f("path"));
    if path.is_absolute() && !paths.insert(path.clone()) {
        c.bad(
            Some(path_span),
            &f("path"),
            format!("{} is used by two pools", path.display()),
        );
    }
    let chunk_size = match p.chunk_size {
        None => d.chunk_size,
        Some(s) => {
            let ByteSize(n) = *s.get_ref();
            if !n.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&n) {
                c.bad(
                    Some(s.span()),
                    &f("chunk_size"),
                    format!("{n} bytes: must be a power of two from 4KiB to 1MiB"),
                );
            }
            u32::try_from(n).unwrap_or(d.chunk_size)
        }
    };
    let capacity_bytes = match p.capacity {
        None => d.capacity_bytes,
        Some(s) => {
            let ByteSize(n) = *s.get_ref();
            if n < u64::from(chunk_size) || n % u64::from(chunk_size.max(1)) != 0 {
                c.bad(
                    Some(s.span()),
                    &f("capacity"),
                    format!("{n} bytes: must be a non-zero multiple of chunk_size ({chunk_size})"),
                );
            }
            n
        }
    };
    let low_water_pct = match p.low_water_pct {
        None => d.low_water_pct,
        Some(s) => {
            let n = *s.get_ref();
            if !(1..=100).contains(&n) {
                c.bad(
                    Some(s.span()),
                    &f("low_water_pct"),
                    format!("{n}: must be 1..=100"),
                );
            }
            n
        }
    };
    let metadata_cache = match p.metadata_cache {
        None => d.metadata_cache,
        Some(s) => {
            let ByteSize(n) = *s.get_ref();
            if n < MIN_METADATA_CACHE {
                c.bad(
                    Some(s.span()),
                    &f("metadata_cache"),
                    format!("{n} bytes: must be at least 1MiB"),
                );
            }
            n
        }
    };
    PoolConfig {
        name,
        path,
        chunk_size,
        capacity_bytes,
        low_water_pct,
        auto_create: p.auto_create.unwrap_or(d.auto_create),
        metadata_cache,
        sparse_data: p.sparse_data.unwrap_or(d.sparse_data),
    }
}
