//! Resolution of the kernel's `dev_config` string into a backstore we serve.
//!
//! Forms we own: `thin/<pool>/<volume>` and `file/<path>` (tcmu-runner's
//! format, so `file//var/lib/img.raw` names `/var/lib/img.raw`). Any other
//! subtype belongs to another daemon and parses to `Ok(None)`.

use std::path::{Component, PathBuf};

use super::BackstoreError;
use crate::config::Subtypes;

/// Longest `dev_config` the kernel accepts.
pub const MAX_DEV_CONFIG: usize = 255;

/// A backstore named by a device's `dev_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevConfig {
    /// A volume (or a snapshot, served read-only) in a configured thin pool.
    Thin {
        /// Name of the pool in the daemon configuration.
        pool: String,
        /// Volume or snapshot name inside the pool.
        volume: String,
    },
    /// A raw image file (absolute path).
    File {
        /// Absolute path of the image.
        path: PathBuf,
    },
}

impl DevConfig {
    /// Parses a `dev_config` string. `Ok(None)`: a subtype that is not ours
    /// (leave the device alone); `Err`: our subtype but malformed.
    pub fn parse(s: &str) -> Result<Option<DevConfig>, BackstoreError> {
        Self::parse_as(s, &Subtypes::default())
    }

    /// [`DevConfig::parse`] with the configured subtypes: a subtype turned
    /// off or renamed away is another daemon's.
    pub fn parse_as(s: &str, subtypes: &Subtypes) -> Result<Option<DevConfig>, BackstoreError> {
        let Some((subtype, rest)) = s.split_once('/') else {
            return Ok(None);
        };
        let is = |want: &Option<String>| want.as_deref() == Some(subtype);
        let parsed = if is(&subtypes.thin) {
            parse_thin(rest)
        } else if is(&subtypes.file) {
            parse_file(rest)
        } else {
            return Ok(None);
        };
        if s.len() > MAX_DEV_CONFIG {
            return Err(malformed(s, "longer than 255 bytes"));
        }
        parsed.map(Some).map_err(|why| malformed(s, why))
    }

    /// The canonical `dev_config` string of this backstore.
    pub fn to_dev_config(&self) -> String {
        match self {
            DevConfig::Thin { pool, volume } => format!("thin/{pool}/{volume}"),
            DevConfig::File { path } => format!("file/{}", path.display()),
        }
    }
}

fn malformed(s: &str, why: &'static str) -> BackstoreError {
    BackstoreError::BadDevConfig {
        dev_config: s.to_owned(),
        why,
    }
}

fn parse_thin(rest: &str) -> Result<DevConfig, &'static str> {
    let (pool, volume) = rest
        .split_once('/')
        .ok_or("expected thin/<pool>/<volume>")?;
    if !valid_name(pool) {
        return Err("bad pool name");
    }
    if !valid_name(volume) {
        return Err("bad volume name");
    }
    Ok(DevConfig::Thin {
        pool: pool.to_owned(),
        volume: volume.to_owned(),
    })
}

/// Pool and volume names: 1..=128 bytes of `[A-Za-z0-9._@:+-]`, not `.`/`..`.
pub fn valid_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._@:+-".contains(c);
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name.chars().all(ok_char)
}

fn parse_file(rest: &str) -> Result<DevConfig, &'static str> {
    if rest.is_empty() {
        return Err("missing image path");
    }
    if rest.contains('\0') {
        return Err("NUL in image path");
    }
    let path = PathBuf::from(rest);
    if !path.is_absolute() {
        return Err("image path must be absolute (file//abs/path)");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("'..' in image path");
    }
    if rest.ends_with('/') {
        return Err("image path names a directory");
    }
    Ok(DevConfig::File { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_forms() {
        assert_eq!(
            DevConfig::parse("thin/default/vol1").unwrap(),
            Some(DevConfig::Thin {
                pool: "default".into(),
                volume: "vol1".into()
            })
        );
        for bad in [
            "thin/",
            "thin/p",
            "thin/p/",
            "thin//v",
            "thin/p/v/x",
            "thin/p/..",
            "thin/p/a b",
        ] {
            assert!(
                matches!(
                    DevConfig::parse(bad),
                    Err(BackstoreError::BadDevConfig { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn file_forms_follow_tcmu_runner() {
        assert_eq!(
            DevConfig::parse("file//var/lib/img.raw").unwrap(),
            Some(DevConfig::File {
                path: "/var/lib/img.raw".into()
            })
        );
        for bad in ["file/", "file/rel/img", "file//a/../b", "file//a/"] {
            assert!(DevConfig::parse(bad).is_err(), "{bad}");
        }
        let c = DevConfig::parse("file//x/y").unwrap().unwrap();
        assert_eq!(c.to_dev_config(), "file//x/y");
    }

    #[test]
    fn foreign_subtypes_are_not_ours() {
        for s in [
            "rbd/pool/img",
            "glfs/vol@host/img",
            "",
            "thin",
            "qcow//x.qcow2",
            "zbc/x",
        ] {
            assert_eq!(DevConfig::parse(s).unwrap(), None, "{s}");
        }
    }

    #[test]
    fn too_long_is_malformed() {
        let s = format!("thin/p/{}", "v".repeat(300));
        assert!(DevConfig::parse(&s).is_err());
    }
}
