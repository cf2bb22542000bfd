//! `tcmud pool ...` and `tcmud volume ...`: offline commands on a pool
//! directory that no daemon holds (the pool's lock names the holder's pid
//! when one does).
//!
//! Each command writes its result to `out` and returns an exit status:
//! 0 success, 1 problems found (`pool check`, `repair`, `dump`), 2 error.
//! `pool check` and `pool dump` are read-only (see
//! `tcmud_core::pool::inspect`); every other command opens the pool
//! normally.

mod check;
#[cfg(test)]
mod check_tests;
mod dump;
mod progress;
mod report;
pub mod size;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use tcmud_core::pool::{Pool, PoolConfig, PoolError, PoolOptions};

use progress::Progress;

/// `tcmud pool ...`
#[derive(Debug, Clone, PartialEq, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PoolCommand {
    /// Create a pool in DIR (created if missing; must be empty).
    Create {
        /// Pool directory.
        dir: PathBuf,
        /// Chunk size: a power of two from 4KiB to 1MiB.
        #[arg(long, default_value = "64KiB", value_parser = size::parse_size)]
        chunk_size: u64,
        /// Maximum size of the data file.
        #[arg(long, default_value = "16GiB", value_parser = size::parse_size)]
        capacity: u64,
        /// Low-water mark: percent of capacity allocated that raises an event.
        #[arg(long, default_value_t = 90)]
        low_water: u8,
    },
    /// Show capacity, usage and volumes.
    Info {
        /// Pool directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify the metadata, read-only (exit 0 clean, 1 problems, 2 unreadable).
    ///
    /// Nothing in DIR is written: sled opens a copy of meta/ in $TMPDIR, an
    /// old format is migrated in memory only, the seal and the lock file are
    /// left alone. Every problem found is reported: undecodable records, a
    /// short data file, reference counts, free space, seal mismatches.
    Check {
        /// Pool directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Same as `tcmud pool repair` when problems are found (opens the
        /// pool normally and writes to it).
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild reference counts and free space from the mappings (writes).
    ///
    /// Opens the pool normally (migrating it if needed), drops mappings
    /// that cannot be right (unknown volume, past its end or past the
    /// high-water mark) and prints every change. Exit 0 clean afterwards, 1
    /// problems left, 2 error. A pool that does not open (undecodable
    /// records, short data file) is rescued with dump and restore.
    Repair {
        /// Pool directory.
        dir: PathBuf,
    },
    /// Write the whole metadata as a JSON document, read-only (like thin_dump).
    ///
    /// Reads as `check` does; a damaged pool dumps what decodes and lists
    /// what does not. The document is described in docs/pool-format.md.
    /// Exit 0 clean, 1 problems found (document still written), 2 could not
    /// read.
    Dump {
        /// Pool directory.
        dir: PathBuf,
        /// Output file (default: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write a pool's metadata from a `pool dump` document (like thin_restore).
    ///
    /// Uses the data file in DIR (or a copy of --data). The whole document is
    /// validated before anything is written; reference counts and free space
    /// are recomputed from the mappings (differences are reported). The
    /// restored pool is then opened, checked and closed.
    Restore {
        /// Pool directory (created if missing).
        dir: PathBuf,
        /// The JSON document (`-`: standard input).
        file: PathBuf,
        /// Data file to copy into DIR (which must have none).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Replace an existing meta/ in DIR.
        #[arg(long)]
        force: bool,
    },
}

/// `tcmud volume ...`
#[derive(Debug, Clone, PartialEq, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VolumeCommand {
    /// Create a thin volume.
    Create {
        /// Pool directory.
        dir: PathBuf,
        /// Volume name.
        name: String,
        /// Logical size.
        #[arg(long, value_parser = size::parse_size)]
        size: u64,
        /// Logical block size: 512 or 4096.
        #[arg(long, default_value_t = 512)]
        block_size: u32,
    },
    /// List volumes and snapshots.
    List {
        /// Pool directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grow a volume (shrinking needs --force and frees the chunks past the end).
    Resize {
        /// Pool directory.
        dir: PathBuf,
        /// Volume name.
        name: String,
        /// New logical size.
        #[arg(long, value_parser = size::parse_size)]
        size: u64,
        /// Allow shrinking.
        #[arg(long)]
        force: bool,
    },
    /// Delete a volume or snapshot, freeing chunks nothing else references.
    Delete {
        /// Pool directory.
        dir: PathBuf,
        /// Volume or snapshot name.
        name: String,
    },
    /// Take a read-only snapshot of a volume.
    Snapshot {
        /// Pool directory.
        dir: PathBuf,
        /// Volume to snapshot.
        volume: String,
        /// Name of the new snapshot.
        snapshot: String,
    },
    /// Create a writable volume from a snapshot.
    Clone {
        /// Pool directory.
        dir: PathBuf,
        /// Snapshot to clone.
        snapshot: String,
        /// Name of the new volume.
        new_volume: String,
    },
}

/// Errors of the offline commands.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The pool refused the operation.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A value on the command line is out of range.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
}

/// What a command ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// `pool check`, `repair` or `dump` found problems.
    Problems,
}

fn json_out(out: &mut dyn Write, v: &serde_json::Value) -> Result<(), OfflineError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| OfflineError::Output(e.into()))?;
    writeln!(out, "{s}")?;
    Ok(())
}

fn shown(dir: &Path) -> String {
    dir.display().to_string()
}

/// The pool a command works on: the handle the daemon holds (online), else
/// the pool in `dir`, opened for the command (offline).
fn pool_at(dir: &Path, held: Option<&Pool>, opts: &PoolOptions) -> Result<Pool, OfflineError> {
    match held {
        Some(p) => Ok(p.clone()),
        None => Ok(Pool::open_opts(dir, opts)?),
    }
}

/// A command that names a pool directory (`tcmud pool …`, `tcmud volume …`).
pub trait PoolDir: Sized {
    /// The pool directory the command names.
    fn dir(&self) -> &Path;
    /// The same, to change.
    fn dir_mut(&mut self) -> &mut PathBuf;
    /// The command with its directory made absolute (the daemon's working
    /// directory is not the caller's).
    fn absolute(mut self) -> std::io::Result<Self> {
        let d = self.dir_mut();
        *d = std::path::absolute(&*d)?;
        Ok(self)
    }
}

macro_rules! pool_dir {
    ($t:ident: $($v:ident),+) => {
        impl PoolDir for $t {
            fn dir(&self) -> &Path {
                match self {
                    $($t::$v { dir, .. })|+ => dir,
                }
            }
            fn dir_mut(&mut self) -> &mut PathBuf {
                match self {
                    $($t::$v { dir, .. })|+ => dir,
                }
            }
        }
    };
}

pool_dir!(PoolCommand: Create, Info, Check, Repair, Dump, Restore);
pool_dir!(VolumeCommand: Create, List, Resize, Delete, Snapshot, Clone);

impl PoolCommand {
    /// Whether the command can run on a pool the daemon holds open (the
    /// others need the pool at rest: no daemon using it).
    pub fn runs_online(&self) -> bool {
        matches!(self, PoolCommand::Info { .. })
    }
}

/// Runs a `pool` subcommand offline.
pub fn run_pool(cmd: &PoolCommand, out: &mut dyn Write) -> Result<Outcome, OfflineError> {
    run_pool_on(cmd, None, out)
}

/// Runs a `pool` subcommand offline, the pool opened with `opts`
/// (`tcmud pool --metadata-cache`).
pub fn run_pool_opts(
    cmd: &PoolCommand,
    opts: &PoolOptions,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    run_pool_in(cmd, None, opts, out)
}

/// Runs a `volume` subcommand offline, the pool opened with `opts`.
pub fn run_volume_opts(
    cmd: &VolumeCommand,
    opts: &PoolOptions,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    run_volume_in(cmd, None, opts, out)
}

/// Runs a `volume` subcommand offline.
pub fn run_volume(cmd: &VolumeCommand, out: &mut dyn Write) -> Result<Outcome, OfflineError> {
    run_volume_on(cmd, None, out)
}

/// Runs a `pool` subcommand on `held` (the daemon's handle of the pool in
/// the command's directory) or, without one, offline. Only
/// [`PoolCommand::runs_online`] commands may be given a held pool.
pub fn run_pool_on(
    cmd: &PoolCommand,
    held: Option<&Pool>,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    run_pool_in(cmd, held, &PoolOptions::default(), out)
}

fn run_pool_in(
    cmd: &PoolCommand,
    held: Option<&Pool>,
    opts: &PoolOptions,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    if held.is_some() && !cmd.runs_online() {
        return Err(OfflineError::Usage(
            "this pool command needs the pool at rest (no daemon serving it)".into(),
        ));
    }
    match cmd {
        PoolCommand::Create {
            dir,
            chunk_size,
            capacity,
            low_water,
        } => {
            let chunk_size = u32::try_from(*chunk_size).map_err(|_| {
                OfflineError::Usage(format!("chunk size {chunk_size} is too large"))
            })?;
            let cfg = PoolConfig {
                chunk_size,
                capacity_bytes: *capacity,
                low_water_pct: *low_water,
            };
            Pool::create_opts(dir, &cfg, opts)?.close()?;
            // Owner-only also when DIR existed (empty) with a looser mode.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| PoolError::io(format!("setting the mode of {}", dir.display()), e))?;
            writeln!(
                out,
                "created pool {} (chunk {}, capacity {})",
                shown(dir),
                size::human(u64::from(chunk_size)),
                size::human(*capacity)
            )?;
        }
        PoolCommand::Info { dir, json } => {
            let usage = pool_at(dir, held, opts)?.usage()?;
            if *json {
                json_out(out, &report::usage_json(&usage))?;
            } else {
                report::usage_text(out, &shown(dir), &usage)?;
            }
        }
        PoolCommand::Check { dir, json, repair } => {
            if *repair {
                let o = check::check(dir, false, out)?;
                if o == Outcome::Ok {
                    return Ok(o);
                }
                return check::repair(dir, out);
            }
            return check::check(dir, *json, out);
        }
        PoolCommand::Repair { dir } => return check::repair(dir, out),
        PoolCommand::Dump { dir, output } => return dump::dump(dir, output.as_deref(), out),
        PoolCommand::Restore {
            dir,
            file,
            data,
            force,
        } => return dump::restore(dir, file, data.as_deref(), *force, out),
    }
    Ok(Outcome::Ok)
}

/// Runs a `volume` subcommand on `held` (the daemon's handle of the pool
/// in the command's directory) or, without one, offline.
pub fn run_volume_on(
    cmd: &VolumeCommand,
    held: Option<&Pool>,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    run_volume_in(cmd, held, &PoolOptions::default(), out)
}

fn run_volume_in(
    cmd: &VolumeCommand,
    held: Option<&Pool>,
    opts: &PoolOptions,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    match cmd {
        VolumeCommand::Create {
            dir,
            name,
            size,
            block_size,
        } => {
            pool_at(dir, held, opts)?.create_volume(name, *size, *block_size)?;
            writeln!(out, "created volume {name} ({})", size::human(*size))?;
        }
        VolumeCommand::List { dir, json } => {
            let vols = pool_at(dir, held, opts)?.list_volumes()?;
            if *json {
                let v: Vec<_> = vols.iter().map(report::volume_json).collect();
                json_out(out, &serde_json::Value::Array(v))?;
            } else {
                report::volumes_text(out, &vols)?;
            }
        }
        VolumeCommand::Resize {
            dir,
            name,
            size,
            force,
        } => {
            pool_at(dir, held, opts)?.resize_volume(name, *size, *force)?;
            writeln!(out, "resized {name} to {}", size::human(*size))?;
        }
        VolumeCommand::Delete { dir, name } if held.is_some() => {
            // The daemon's pool: the volume goes now, its chunks are freed
            // by the pool's delete thread while the daemon serves on.
            let mapped = pool_at(dir, held, opts)?.delete_volume_in_background(name)?;
            writeln!(
                out,
                "deleted {name}; its {mapped} mapped chunks are freed in the background \
                 (those no snapshot or clone shares)"
            )?;
        }
        VolumeCommand::Delete { dir, name } => {
            let pool = pool_at(dir, held, opts)?;
            let bar = Progress::new("deleting");
            let r = pool.delete_volume_with_progress(name, &mut |d, t| bar.update(d, t));
            bar.finish();
            r?;
            writeln!(out, "deleted {name}")?;
        }
        VolumeCommand::Snapshot {
            dir,
            volume,
            snapshot,
        } => {
            pool_at(dir, held, opts)?.snapshot(volume, snapshot)?;
            writeln!(out, "snapshot {snapshot} of {volume} taken")?;
        }
        VolumeCommand::Clone {
            dir,
            snapshot,
            new_volume,
        } => {
            pool_at(dir, held, opts)?.clone_snapshot(snapshot, new_volume)?;
            writeln!(out, "cloned {snapshot} as {new_volume}")?;
        }
    }
    Ok(Outcome::Ok)
}

/// Turns a command result into the process exit code, printing errors on
/// stderr.
pub fn exit_code(r: Result<Outcome, OfflineError>) -> ExitCode {
    match r {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Err(e) => {
            let _ = writeln!(io::stderr(), "tcmud: {e}");
            ExitCode::from(2)
        }
    }
}
