//! The `tcmud` command line (clap derive). `tcmud [run] [OPTIONS]` runs the daemon.

use crate::config::{LogFormat, Overrides, RecoveryPolicy};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// tcmud: serves Linux TCMU (target_core_user) devices from thin pools and files.
#[derive(Debug, Parser)]
#[command(name = "tcmud", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: run the daemon).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run` (also accepted without the word `run`).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run(RunArgs),
    /// Pool commands: run by the daemon on a pool it serves, else offline.
    Pool(PoolArgs),
    /// Volume commands: run by the daemon on a pool it serves (LUNs keep
    /// serving), else offline.
    Volume(VolumeArgs),
    /// What the running daemon serves: devices, failed devices, pools.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How to reach the daemon.
        #[command(flatten)]
        via: Via,
    },
    /// Write the manual pages (tcmud.8, one per subcommand, tcmud.toml.5) into DIR.
    #[command(hide = true)]
    ManPages {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Change the running daemon's log filter (e.g. `tcmud=debug,info`).
    LogLevel {
        /// The filter (`tracing` EnvFilter syntax).
        filter: String,
        /// How to reach the daemon.
        #[command(flatten)]
        via: Via,
    },
}

/// How the CLI reaches the daemon.
#[derive(Debug, Clone, Default, Args, PartialEq, Eq)]
pub struct Via {
    /// Control socket of the running daemon (default: $TCMUD_CONTROL_SOCKET,
    /// else /run/tcmud/control.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
}

/// `tcmud pool [--offline] …`
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// The pool command.
    #[command(subcommand)]
    pub cmd: crate::offline::PoolCommand,
    /// Never ask the daemon (fails if it holds the pool).
    #[arg(long, global = true)]
    pub offline: bool,
    /// Memory for the pool's metadata when the command opens it offline
    /// (at least 1MiB; default 64MiB; a pool the daemon serves keeps the
    /// `metadata_cache` of its config).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_metadata_cache)]
    pub metadata_cache: Option<u64>,
    /// How to reach the daemon.
    #[command(flatten)]
    pub via: Via,
}

/// `tcmud volume [--offline] …`
#[derive(Debug, Clone, Args)]
pub struct VolumeArgs {
    /// The volume command.
    #[command(subcommand)]
    pub cmd: crate::offline::VolumeCommand,
    /// Never ask the daemon (fails if it holds the pool).
    #[arg(long, global = true)]
    pub offline: bool,
    /// As `tcmud pool --metadata-cache`.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_metadata_cache)]
    pub metadata_cache: Option<u64>,
    /// How to reach the daemon.
    #[command(flatten)]
    pub via: Via,
}

/// `--metadata-cache`: a size (`64MiB`) of at least
/// [`MIN_METADATA_CACHE`](tcmud_core::pool::pagestore::MIN_METADATA_CACHE),
/// as the config's `metadata_cache`.
pub fn parse_metadata_cache(s: &str) -> Result<u64, String> {
    let n = crate::offline::size::parse_size(s)?;
    if n < tcmud_core::pool::pagestore::MIN_METADATA_CACHE {
        return Err(format!("{n} bytes: must be at least 1MiB"));
    }
    Ok(n)
}

impl PoolArgs {
    /// The options the pool is opened with offline.
    pub fn pool_options(&self) -> tcmud_core::pool::PoolOptions {
        pool_options(self.metadata_cache)
    }
}

impl VolumeArgs {
    /// The options the pool is opened with offline.
    pub fn pool_options(&self) -> tcmud_core::pool::PoolOptions {
        pool_options(self.metadata_cache)
    }
}

fn pool_options(metadata_cache: Option<u64>) -> tcmud_core::pool::PoolOptions {
    let d = tcmud_core::pool::PoolOptions::default();
    tcmud_core::pool::PoolOptions {
        metadata_cache: metadata_cache.unwrap_or(d.metadata_cache),
        ..d
    }
}

/// Options of the daemon; each overrides the config file.
#[derive(Debug, Clone, Default, Args, PartialEq, Eq)]
pub struct RunArgs {
    /// Config file (default: /etc/tcmud/tcmud.toml if present, else built-in defaults).
    #[arg(long, short = 'c', env = "TCMUD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `tcmud=debug,warn`.
    #[arg(long, value_name = "L")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Ring recovery policy for adopted/restarted devices.
    #[arg(long, value_enum)]
    pub recovery: Option<RecoveryPolicy>,
    /// Answer kernel events with *_DONE replies (SUPP_KERN_CMD_REPLY).
    #[arg(long, value_name = "true|false")]
    pub netlink_replies: Option<bool>,
    /// sysfs root.
    #[arg(long, value_name = "DIR")]
    pub sys_root: Option<PathBuf>,
    /// configfs root.
    #[arg(long, value_name = "DIR")]
    pub configfs_root: Option<PathBuf>,
    /// Directory holding the uioN device nodes.
    #[arg(long, value_name = "DIR")]
    pub dev_root: Option<PathBuf>,
    /// Runtime directory for the single-instance lock (default /run/tcmud).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The config overrides these options carry.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            recovery: self.recovery,
            netlink_replies: self.netlink_replies,
            sys_root: self.sys_root.clone(),
            configfs_root: self.configfs_root.clone(),
            dev_root: self.dev_root.clone(),
            run_dir: self.run_dir.clone(),
        }
    }
}
