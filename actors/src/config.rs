//! The daemon's configuration: TOML file -> validated [`DaemonConfig`], then CLI overrides.
//!
//! Two steps: `RawConfig` is what serde reads (with source spans), [`DaemonConfig`]
//! is the checked result. Every invalid value is reported with its line and column
//! and the reason; all validation problems are reported at once.

mod size;

pub use size::{parse_size, ByteSize};

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tcmud/tcmud.toml";

/// What to do with a ring the daemon did not cleanly hand over (restart, adoption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryPolicy {
    /// Fail the commands left in the ring with BUSY (`action/reset_ring`) and start clean.
    #[default]
    Reset,
    /// Re-execute the commands found between tail and head (safe only without lost state).
    Replay,
}

/// Whether the daemon may change target_core_user's module-wide settings
/// (`block_netlink`/`reset_netlink` during start-up, clearing
/// SET_FEATURES' reply flag), which also act on other daemons' devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleParams {
    /// `exclusive` when no other daemon's TCMU device exists at start, else
    /// `shared`.
    #[default]
    Auto,
    /// tcmud is the only TCMU daemon: block and reset netlink while adopting,
    /// set the reply flag either way.
    Exclusive,
    /// Another daemon (tcmu-runner) serves devices too: leave
    /// `block_netlink`/`reset_netlink` alone and only ever turn replies on.
    Shared,
}

/// The `dev_config` subtypes tcmud serves (`[daemon.subtypes]`); `None`: that
/// backstore kind is off, its devices are left to other daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtypes {
    /// Thin volumes, `<thin>/<pool>/<volume>` (default `thin`).
    pub thin: Option<String>,
    /// Image files, `<file>/<path>` (default `file`, the subtype of
    /// tcmu-runner's file handler too: see docs/coexistence.md).
    pub file: Option<String>,
    /// Ceph RBD images, `<rbd>/<pool>/<image>` (default `rbd`, the subtype of
    /// tcmu-runner's rbd handler too; their `dev_config` strings are the
    /// same). Only builds with the `rbd` feature serve it, and default it
    /// on; others leave `rbd/` devices alone unless configured, and then
    /// fail them with a clear error.
    pub rbd: Option<String>,
}

impl Default for Subtypes {
    fn default() -> Self {
        Subtypes {
            thin: Some("thin".into()),
            file: Some("file".into()),
            // Without the feature `rbd/` devices stay another daemon's
            // (tcmu-runner's), as before.
            rbd: cfg!(feature = "rbd").then(|| "rbd".into()),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One thin pool the daemon may serve volumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Pool name, as used in `thin/<pool>/<volume>`.
    pub name: String,
    /// Pool directory (absolute).
    pub path: PathBuf,
    /// Allocation unit in bytes (power of two, 4 KiB..=1 MiB).
    pub chunk_size: u32,
    /// Capacity of the pool in bytes.
    pub capacity_bytes: u64,
    /// Usage percentage that raises the low-water warning.
    pub low_water_pct: u8,
    /// Create the pool directory and volumes named by dev_config when missing.
    pub auto_create: bool,
    /// Bytes of metadata the pool keeps in memory (format 3): its page
    /// cache tiers and sled's cache (`tcmud_core::pool::pagestore::CacheSplit`).
    pub metadata_cache: u64,
    /// Leave the rest of a chunk written partially a hole instead of
    /// preallocating it (`tcmud_core::pool::PoolOptions::sparse_data`): host
    /// space in proportion to the bytes written, but an overwrite may then
    /// find the host file system full. Default false.
    pub sparse_data: bool,
}

/// The validated configuration of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Ring recovery policy for adopted and restarted devices.
    pub recovery: RecoveryPolicy,
    /// How long stopping a device waits for commands running on its backstore
    /// before it fails the rest and closes (`drain_timeout` seconds, default
    /// 30; `0`: for ever, `None` here).
    pub drain_timeout: Option<std::time::Duration>,
    /// Send SET_FEATURES(SUPP_KERN_CMD_REPLY) and `*_DONE` replies.
    pub netlink_replies: bool,
    /// tracing env-filter directive (e.g. `info`, `tcmud=debug`).
    pub log_level: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Root of sysfs (`/sys`; a temp tree in tests).
    pub sys_root: PathBuf,
    /// Root of configfs (`/sys/kernel/config`).
    pub configfs_root: PathBuf,
    /// Where `uioN` device nodes live (`/dev`).
    pub dev_root: PathBuf,
    /// Runtime directory holding the single-instance lock (`/run/tcmud`).
    pub run_dir: PathBuf,
    /// Directories `file//<path>` backstores may live under (none: `file/` is off).
    pub file_roots: Vec<PathBuf>,
    /// The dev_config subtypes served.
    pub subtypes: Subtypes,
    /// Whether module-wide settings may be changed.
    pub module_params: ModuleParams,
    /// The pools, in file order.
    pub pools: Vec<PoolConfig>,
    /// Offer `org.kernel.TCMUService1` on the system D-Bus (targetcli-fb's
    /// `user:` backstores) when a system bus runs (`dbus`, default true; no
    /// bus, or the name owned by tcmu-runner: logged, the daemon runs without).
    pub dbus: bool,
    /// Where Prometheus metrics are served over HTTP (`metrics =
    /// "127.0.0.1:9771"`); none (the default): not served.
    pub metrics: Option<std::net::SocketAddr>,
    /// Threads the device actors are spread over (0: one per core).
    pub device_threads: usize,
    /// Threads running blocking backstore I/O for every device (0: 2 per
    /// core + 4).
    pub io_threads: usize,
    /// Jobs of one backstore that may run on those threads at once, so a
    /// backstore whose calls block leaves threads to the others (0: half of
    /// the I/O threads).
    pub io_jobs_per_backstore: usize,
    /// The CPU priority (nice value, −20 to 19) of every thread of the
    /// daemon (default −10, `crate::priority`): its few threads serve every
    /// LUN and must not wait for CPU behind the initiators' many.
    pub nice: i8,
    /// Implicit ALUA for RBD images exported by several daemons
    /// (`[daemon.alua]`: this daemon's target port group and relative port,
    /// and the peers'); none: no ALUA.
    pub alua: Option<tcmud_core::scsi::AluaConfig>,
}

/// The thread counts of a configuration, with defaults from the core count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadCounts {
    /// Device threads.
    pub device: usize,
    /// I/O threads.
    pub io: usize,
    /// Jobs of one backstore running at once.
    pub io_per_backstore: usize,
}

impl DaemonConfig {
    /// The thread counts for a machine with `cores` cores (0 in the
    /// configuration: the default from `cores`).
    pub fn thread_counts(&self, cores: usize) -> ThreadCounts {
        let cores = cores.max(1);
        let pick = |v: usize, default: usize| if v == 0 { default } else { v };
        let device = pick(self.device_threads, cores);
        let io = pick(self.io_threads, 2 * cores + 4);
        let io_per_backstore = pick(self.io_jobs_per_backstore, io.div_ceil(2)).min(io);
        ThreadCounts {
            device,
            io,
            io_per_backstore,
        }
    }

    /// Finds a pool by name.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

impl Default for DaemonConfig {
    /// The built-in default (identical to `examples/tcmud.toml`).
    fn default() -> Self {
        // Parsing the empty document yields every field's default.
        let raw = RawConfig::default();
        let mut problems = Vec::new();
        let cfg = raw.check("", &mut problems);
        debug_assert!(problems.is_empty());
        cfg
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `line L, column C` when known, else the field's path.
    pub location: String,
    /// Dotted field name, e.g. `pool[1].chunk_size`.
    pub field: String,
    /// Why the value is rejected.
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.field, self.why)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (serde's message has line/column).
    #[error("config {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// Parser message with location.
        message: String,
    },
    /// Values parsed but are not acceptable.
    #[error("config {path} has {} invalid value(s):\n  {}", problems.len(), join(problems))]
    Invalid {
        /// The file (or `<command line>`).
        path: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn join(p: &[Problem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Settings from the command line that override the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--recovery`.
    pub recovery: Option<RecoveryPolicy>,
    /// `--netlink-replies`.
    pub netlink_replies: Option<bool>,
    /// `--sys-root`.
    pub sys_root: Option<PathBuf>,
    /// `--configfs-root`.
    pub configfs_root: Option<PathBuf>,
    /// `--dev-root`.
    pub dev_root: Option<PathBuf>,
    /// `--run-dir`.
    pub run_dir: Option<PathBuf>,
}

/// Parses and validates a config document; `origin` names it in messages.
pub fn from_toml(text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut problems = Vec::new();
    let cfg = raw.check(text, &mut problems);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            path: origin.to_owned(),
            problems,
        })
    }
}

/// Loads `path`, or, when `None`, [`DEFAULT_CONFIG_PATH`] if it exists, else the defaults.
pub fn load(path: Option<&Path>) -> Result<DaemonConfig, ConfigError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => PathBuf::from(DEFAULT_CONFIG_PATH),
        None => return Ok(DaemonConfig::default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    from_toml(&text, &path.display().to_string())
}

/// Applies command-line overrides and re-validates the fields they touch.
pub fn apply_overrides(mut cfg: DaemonConfig, o: &Overrides) -> Result<DaemonConfig, ConfigError> {
    let mut problems = Vec::new();
    if let Some(l) = &o.log_level {
        check_log_level(l, "--log-level", "log_level", &mut problems);
        cfg.log_level = l.clone();
    }
    for (val, dst, flag) in [
        (&o.sys_root, &mut cfg.sys_root, "--sys-root"),
        (&o.configfs_root, &mut cfg.configfs_root, "--configfs-root"),
        (&o.dev_root, &mut cfg.dev_root, "--dev-root"),
        (&o.run_dir, &mut cfg.run_dir, "--run-dir"),
    ] {
        if let Some(p) = val {
            check_absolute(p, flag, flag.trim_start_matches('-'), &mut problems);
            *dst = p.clone();
        }
    }
    cfg.log_format = o.log_format.unwrap_or(cfg.log_format);
    cfg.recovery = o.recovery.unwrap_or(cfg.recovery);
    cfg.netlink_replies = o.netlink_replies.unwrap_or(cfg.netlink_replies);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            path: "<command line>".into(),
            problems,
        })
    }
}

fn check_log_level(l: &str, loc: &str, field: &str, problems: &mut Vec<Problem>) {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(l) {
        problems.push(Problem {
            location: loc.into(),
            field: field.into(),
            why: format!("{l:?} is not a log filter ({e})"),
        });
    }
}

fn check_absolute(p: &Path, loc: &str, field: &str, problems: &mut Vec<Problem>) {
    if !p.is_absolute() {
        problems.push(Problem {
            location: loc.into(),
            field: field.into(),
            why: format!("{} must be an absolute path", p.display()),
        });
    }
}

mod raw;
use raw::RawConfig;
