//! The kernel as files: prerequisites, module parameters, existing devices, device geometry.

use crate::config::DaemonConfig;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use tcmud_core::netlink::{UioName, UIO_PREFIX};

/// A kernel prerequisite that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// `<sys>/module/target_core_user` does not exist.
    #[error("kernel module target_core_user is not loaded ({0} is missing; run `modprobe target_core_user`)")]
    Module(PathBuf),
    /// `<configfs>/target/core` does not exist.
    #[error("configfs is not mounted or target_core_mod is not loaded ({0} is missing; run `mount -t configfs none /sys/kernel/config`)")]
    Configfs(PathBuf),
}

/// Checks that target_core_user is loaded and configfs is mounted with LIO's tree.
pub fn check_prerequisites(cfg: &DaemonConfig) -> Result<(), Missing> {
    let module = module_dir(cfg);
    if !module.is_dir() {
        return Err(Missing::Module(module));
    }
    let core = cfg.configfs_root.join("target/core");
    if !core.is_dir() {
        return Err(Missing::Configfs(core));
    }
    Ok(())
}

fn module_dir(cfg: &DaemonConfig) -> PathBuf {
    cfg.sys_root.join("module/target_core_user")
}

/// Writes `value` to a target_core_user module parameter when the kernel has it.
/// Returns `Ok(false)` when the parameter does not exist (older kernels).
pub fn set_module_param(cfg: &DaemonConfig, name: &str, value: &str) -> std::io::Result<bool> {
    let p = module_dir(cfg).join("parameters").join(name);
    if !p.exists() {
        return Ok(false);
    }
    fs::write(&p, value)?;
    Ok(true)
}

/// A TCMU device found in `<sys>/class/uio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDevice {
    /// uio minor.
    pub minor: u32,
    /// The full uio name (without trailing newline).
    pub name: String,
    /// Its parts.
    pub uio: UioName,
}

/// Lists TCMU devices (`tcm-user/...` uio names), sorted by minor. Unreadable or
/// malformed entries are logged and skipped.
pub fn scan_uio(cfg: &DaemonConfig) -> Vec<FoundDevice> {
    scan_uio_except(cfg, |_| false)
}

/// [`scan_uio`] without reading the names of the minors `skip` picks (the
/// devices already served: a rescan then reads only what it may act on).
pub fn scan_uio_except(cfg: &DaemonConfig, skip: impl Fn(u32) -> bool) -> Vec<FoundDevice> {
    let dir = cfg.sys_root.join("class/uio");
    let Ok(entries) = fs::read_dir(&dir) else {
        tracing::debug!(dir = %dir.display(), "no uio class directory; nothing to adopt");
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(minor) = uio_minor(&e.file_name()) else {
            continue;
        };
        if skip(minor) {
            continue;
        }
        let Ok(raw) = fs::read_to_string(e.path().join("name")) else {
            tracing::warn!(minor, "cannot read uio name; skipped");
            continue;
        };
        let name = raw.trim_end_matches('\n').to_owned();
        if !name.starts_with(UIO_PREFIX) {
            continue;
        }
        match UioName::parse(&name) {
            Ok(uio) => out.push(FoundDevice { minor, name, uio }),
            Err(err) => tracing::warn!(minor, %err, "malformed TCMU uio name; skipped"),
        }
    }
    out.sort_by_key(|d| d.minor);
    out
}

/// N of a `uioN` entry.
fn uio_minor(fname: &std::ffi::OsStr) -> Option<u32> {
    fname
        .to_str()
        .and_then(|n| n.strip_prefix("uio"))
        .and_then(|n| n.parse::<u32>().ok())
}

/// The entries of `<sys>/class/uio`: minor -> inode number of the entry, in
/// one directory read (no file opened). Sysfs gives a uio device created
/// again at the same minor a new node, so an unchanged inode is the same
/// kernel device. `None`: the directory cannot be read.
pub fn list_uio(cfg: &DaemonConfig) -> Option<HashMap<u32, u64>> {
    let entries = fs::read_dir(cfg.sys_root.join("class/uio")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| Some((uio_minor(&e.file_name())?, e.ino())))
            .collect(),
    )
}

/// The name of `<sys>/class/uio/uio<minor>` (without trailing newline), if readable.
pub fn uio_name(cfg: &DaemonConfig, minor: u32) -> Option<String> {
    let raw = fs::read_to_string(cfg.sys_root.join(format!("class/uio/uio{minor}/name"))).ok()?;
    Some(raw.trim_end_matches('\n').to_owned())
}

/// `<configfs>/target/core/user_<hba>/<dev>`.
pub fn configfs_dir(cfg: &DaemonConfig, uio: &UioName) -> PathBuf {
    cfg.configfs_root
        .join("target/core")
        .join(uio.hba_dir())
        .join(&uio.dev)
}

/// Device size in bytes: `attrib/dev_size`, else `Size: N` in `info`.
pub fn read_size(dir: &Path) -> Option<u64> {
    if let Some(n) = read_number(&dir.join("attrib/dev_size")) {
        return Some(n);
    }
    let info = fs::read_to_string(dir.join("info")).ok()?;
    let mut words = info.split_whitespace();
    while let Some(w) = words.next() {
        if w == "Size:" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Logical block size: `attrib/hw_block_size`, else `SectorSize: N` in `info`, else 512.
pub fn read_block_size(dir: &Path) -> u32 {
    if let Some(n) =
        read_number(&dir.join("attrib/hw_block_size")).and_then(|n| u32::try_from(n).ok())
    {
        return n;
    }
    fs::read_to_string(dir.join("info"))
        .ok()
        .and_then(|info| {
            let mut words = info.split_whitespace();
            while let Some(w) = words.next() {
                if w == "SectorSize:" {
                    return words.next()?.parse().ok();
                }
            }
            None
        })
        .unwrap_or(512)
}

fn read_number(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}
