//! `CheckConfig` and `ConfigDesc`: what a handler object says about a
//! cfgstring, from the daemon's own parser and configuration.
//!
//! targetcli-fb calls `CheckConfig("<subtype>/<cfgstring>")` on the object of
//! the subtype before it creates the storage object, and shows the message
//! when the answer is false. The string is parsed by the code the daemon
//! parses `dev_config` with ([`DevConfig`]); then the pool must be
//! configured (and exist, or be `auto_create`), a volume missing from a pool
//! the daemon holds must be creatable, and an image must lie under
//! `file_roots` where the daemon would find it. Nothing is opened for I/O or
//! created, and no pool is opened here: a pool the daemon has not opened yet
//! is only looked at on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backstore::{
    probe_image, BackstoreError, DevConfig, ImageProbe, NotCreated, PoolRegistry, PoolSpec,
};
use crate::config::Subtypes;
use crate::offline::size::human;

/// The kind of backstore a handler object serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `thin/<pool>/<volume>`.
    Thin,
    /// `file/<absolute path>`.
    File,
    /// `rbd/<pool>/<image>[@snap]` (builds with the `rbd` feature).
    Rbd,
}

/// One handler object: a subtype tcmud serves and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerInfo {
    /// The subtype (`thin`, `file`, or their configured names).
    pub subtype: String,
    /// What it serves.
    pub kind: Kind,
}

/// Why a served subtype has no D-Bus object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotExported {
    /// The subtype.
    pub subtype: String,
}

impl std::fmt::Display for NotExported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "subtype {:?} cannot name a D-Bus object (targetcli takes the handler name from the \
             object path, whose elements are A-Z a-z 0-9 _ only): it is served but not offered \
             on D-Bus; rename it in [daemon.subtypes] (e.g. {:?}) to create its LUNs with targetcli",
            self.subtype,
            self.subtype.replace(['-', '.'], "_")
        )
    }
}

/// The handler objects for the served subtypes, and the subtypes that
/// cannot be D-Bus object names.
pub fn handlers(subtypes: &Subtypes) -> (Vec<HandlerInfo>, Vec<NotExported>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (name, kind) in [
        (&subtypes.thin, Kind::Thin),
        (&subtypes.file, Kind::File),
        (&subtypes.rbd, Kind::Rbd),
    ] {
        let Some(name) = name else { continue };
        if kind == Kind::Rbd && !cfg!(feature = "rbd") {
            continue; // configured but not built in: such LUNs fail (docs/rbd.md)
        }
        if is_path_element(name) {
            out.push(HandlerInfo {
                subtype: name.clone(),
                kind,
            });
        } else {
            skipped.push(NotExported {
                subtype: name.clone(),
            });
        }
    }
    (out, skipped)
}

/// A D-Bus object path element: `[A-Za-z0-9_]+`.
fn is_path_element(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a check reads from the running daemon.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The served subtypes.
    pub subtypes: &'a Subtypes,
    /// Where `file/` images may live.
    pub file_roots: &'a [PathBuf],
    /// The pool registries (configured pools, those open), oldest first.
    pub registries: &'a [Arc<PoolRegistry>],
}

impl Served<'_> {
    /// The newest configuration of pool `name` and its registry.
    fn pool(&self, name: &str) -> Option<(&Arc<PoolRegistry>, &PoolSpec)> {
        self.registries
            .iter()
            .rev()
            .find_map(|r| r.spec(name).ok().map(|s| (r, s)))
    }

    fn pool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for r in self.registries {
            for s in r.specs() {
                if !names.contains(&s.name) {
                    names.push(s.name.clone());
                }
            }
        }
        names
    }
}

/// The cfgstring forms, after `<subtype>/` (what targetcli's `create` takes).
fn form(kind: Kind) -> &'static str {
    match kind {
        Kind::Thin => "<pool>/<volume>[;ro][;lbppbe=N]",
        Kind::File => "/<absolute path>[;ro][;lbppbe=N]",
        Kind::Rbd => {
            "<pool>/<image>[@<snapshot>][;conf=<ceph.conf>][;id=<client id>]\
             [;osd_op_timeout=<seconds>][;ro][;lbppbe=N]"
        }
    }
}

/// The `ConfigDesc` property: the cfgstring form and what it names here.
pub fn config_desc(h: &HandlerInfo, s: &Served<'_>) -> String {
    let common = "Options: ;ro serves it write-protected; ;lbppbe=N reports 2^N logical blocks \
                  per physical block.";
    match h.kind {
        Kind::Thin => {
            let pools = s.pool_names();
            format!(
                "{} - a volume (or a snapshot, served read-only) of a thin pool of tcmud \
                 (configured pools: {}). The volume must exist (tcmud volume create) unless the \
                 pool has auto_create = true, which creates it at the LUN's size. {common}",
                form(h.kind),
                if pools.is_empty() {
                    "none".to_owned()
                } else {
                    pools.join(", ")
                }
            )
        }
        Kind::File => {
            let roots = if s.file_roots.is_empty() {
                "none: file backstores are off until file_roots is set in tcmud.toml".to_owned()
            } else {
                s.file_roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{} - a raw image file or block device under tcmud's file_roots ({roots}), \
                 reached without following symlinks; a missing file is created at the LUN's \
                 size. {common}",
                form(h.kind)
            )
        }
        Kind::Rbd => format!(
            "{} - a Ceph RBD image (a snapshot is served read-only), the same cfgstring as \
             tcmu-runner's rbd handler. The image must exist (rbd create); the cluster is \
             reached when the LUN is created, not by this check. {common}",
            form(h.kind)
        ),
    }
}

/// `CheckConfig`: `Ok(what it names)` or `Err(why it would not be served)`.
pub fn check_config(h: &HandlerInfo, cfgstring: &str, s: &Served<'_>) -> Result<String, String> {
    let prefix = format!("{}/", h.subtype);
    if !cfgstring.starts_with(&prefix) {
        return Err(format!(
            "{cfgstring:?} is not a {} config: expected {prefix}{}",
            h.subtype,
            form(h.kind)
        ));
    }
    let parsed = DevConfig::parse_with_options_as(cfgstring, s.subtypes)
        .map_err(|e| format!("{e} (form: {prefix}{})", form(h.kind)))?;
    match (h.kind, parsed) {
        (Kind::Thin, Some((DevConfig::Thin { pool, volume }, _))) => check_thin(&pool, &volume, s),
        (Kind::File, Some((DevConfig::File { path }, _))) => check_file(&path, s),
        (Kind::Rbd, Some((DevConfig::Rbd(spec), _))) => check_rbd(&spec),
        // The prefix is this handler's subtype, which parses to its own kind.
        _ => Err(format!(
            "{cfgstring:?} is not a {} config: expected {prefix}{}",
            h.subtype,
            form(h.kind)
        )),
    }
}

/// An RBD cfgstring parsed: its `conf=` file must be readable. The cluster
/// is not contacted (a check must not wait on an unreachable monitor).
fn check_rbd(spec: &crate::backstore::RbdSpec) -> Result<String, String> {
    if let Some(conf) = &spec.conf {
        if let Err(e) = std::fs::metadata(conf) {
            return Err(format!(
                "conf={}: {e}; give the cluster's ceph.conf (or leave conf= out for librados' \
                 default search)",
                conf.display()
            ));
        }
    }
    Ok(format!(
        "rbd image {}{}: the cluster is reached when the LUN is created",
        spec.image_ref(),
        if spec.snap.is_some() {
            " (a snapshot, served read-only)"
        } else {
            ""
        }
    ))
}

fn check_thin(pool: &str, volume: &str, s: &Served<'_>) -> Result<String, String> {
    let Some((reg, spec)) = s.pool(pool) else {
        let names = s.pool_names();
        return Err(format!(
            "no pool named {pool:?} in tcmud's configuration (configured: {}); add a [[pool]] \
             to tcmud.toml and reload (SIGHUP)",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    };
    let Some(held) = reg.held(pool) else {
        return check_pool_on_disk(spec, volume);
    };
    let list = held
        .list_volumes()
        .map_err(|e| format!("cannot list the volumes of pool {pool:?}: {e}"))?;
    match list.iter().find(|v| v.name == volume) {
        Some(v) => {
            let what = match v.kind {
                tcmud_core::pool::VolumeKind::Snapshot => "snapshot (served read-only)",
                _ => "volume",
            };
            Ok(format!(
                "{what} {pool}/{volume}: {}, {}-byte blocks",
                human(v.size_bytes),
                v.block_size
            ))
        }
        None if spec.auto_create => Ok(format!(
            "volume {pool}/{volume} does not exist yet: the pool creates it at the LUN's size \
             (auto_create)"
        )),
        None => Err(volume_missing(spec, volume)),
    }
}

fn volume_missing(spec: &PoolSpec, volume: &str) -> String {
    format!(
        "volume {volume:?} does not exist in pool {:?} (auto_create is off for this pool); \
         create it first: tcmud volume create {} {volume} --size <size>",
        spec.name,
        spec.path.display()
    )
}

/// A pool the daemon has not opened: its directory must hold a pool, or be
/// creatable. Whether the volume exists is known once the pool is open.
fn check_pool_on_disk(spec: &PoolSpec, volume: &str) -> Result<String, String> {
    let empty = match std::fs::read_dir(&spec.path) {
        Ok(mut it) => it.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(format!(
                "cannot read pool directory {}: {e}",
                spec.path.display()
            ))
        }
    };
    match (empty, spec.auto_create) {
        (true, false) => Err(BackstoreError::PoolMissing {
            name: spec.name.clone(),
            path: spec.path.clone(),
            why: NotCreated::AutoCreateOff,
        }
        .to_string()),
        (true, true) => Ok(format!(
            "pool {} is created at {} with volume {volume} at the LUN's size (auto_create)",
            spec.name,
            spec.path.display()
        )),
        (false, _) => Ok(format!(
            "pool {} ({}) is not open in tcmud yet: volume {volume} is looked up when the LUN \
             is enabled{}",
            spec.name,
            spec.path.display(),
            if spec.auto_create {
                " (created if missing: auto_create)"
            } else {
                " (it must exist: auto_create is off)"
            }
        )),
    }
}

fn check_file(path: &Path, s: &Served<'_>) -> Result<String, String> {
    match probe_image(path, s.file_roots).map_err(|e| e.to_string())? {
        ImageProbe::Regular(len) => Ok(format!(
            "image {} ({}; extended, never shrunk, to the LUN's size)",
            path.display(),
            human(len)
        )),
        ImageProbe::BlockDevice => Ok(format!(
            "block device {} (served at its own size)",
            path.display()
        )),
        ImageProbe::Missing { dir_exists: true } => Ok(format!(
            "{} does not exist yet: it is created at the LUN's size",
            path.display()
        )),
        ImageProbe::Missing { dir_exists: false } => Err(format!(
            "{} does not exist and neither does its directory (or a symlink is on the way)",
            path.display()
        )),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
