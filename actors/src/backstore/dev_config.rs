//! Resolution of the kernel's `dev_config` string into a backstore we serve.
//!
//! Forms we own: `thin/<pool>/<volume>`, `file/<path>` (tcmu-runner's
//! format, so `file//var/lib/img.raw` names `/var/lib/img.raw`) and
//! `rbd/<pool>/<image>[@<snap>][;conf=..;id=..;osd_op_timeout=..]`
//! (tcmu-runner's rbd handler's, see [`RbdSpec`]). Any other subtype
//! belongs to another daemon and parses to `Ok(None)`.
//!
//! Options follow the backstore after `;` (as tcmu-runner's rbd handler
//! takes them), e.g. `thin/p/v;ro`: [`DevOptions`]. An image path
//! therefore cannot contain `;`.

use std::path::{Component, PathBuf};

use super::rbd_config::{parse_rbd, RbdSpec};
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
    /// A Ceph RBD image or snapshot (served by builds with the `rbd`
    /// feature).
    Rbd(RbdSpec),
}

/// How a backstore is served, from the options after its `;`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevOptions {
    /// `ro`: the LUN is write-protected (MODE SENSE WP; every write-class
    /// command fails with DATA PROTECT, WRITE PROTECTED). Snapshots are
    /// always served so.
    pub read_only: bool,
    /// `lbppbe=N` (0-15): 2^N logical blocks per physical block (READ
    /// CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT; VPD B0
    /// granularities are multiples of the physical block), e.g. `lbppbe=3`
    /// for 512-byte logical blocks on 4 KiB physical ones.
    pub lbppbe: u8,
}

impl DevOptions {
    fn parse(opts: &str) -> Result<DevOptions, &'static str> {
        let mut o = DevOptions::default();
        for opt in opts.split(';') {
            match opt {
                "ro" => o.read_only = true,
                "" => return Err("empty option after ';'"),
                _ => match opt.split_once('=') {
                    Some(("lbppbe", n)) => {
                        o.lbppbe = n
                            .parse::<u8>()
                            .ok()
                            .filter(|&n| n <= 15)
                            .ok_or("lbppbe must be 0-15")?;
                    }
                    _ => return Err("unknown option (known: ro, lbppbe=N)"),
                },
            }
        }
        Ok(o)
    }

    /// The options as they follow the backstore (`;ro`...), empty for the
    /// defaults.
    pub fn to_suffix(&self) -> String {
        let mut s = String::new();
        if self.read_only {
            s.push_str(";ro");
        }
        if self.lbppbe != 0 {
            s.push_str(&format!(";lbppbe={}", self.lbppbe));
        }
        s
    }
}

impl DevConfig {
    /// Parses a `dev_config` string. `Ok(None)`: a subtype that is not ours
    /// (leave the device alone); `Err`: our subtype but malformed (options
    /// included: see [`DevConfig::parse_with_options`]).
    pub fn parse(s: &str) -> Result<Option<DevConfig>, BackstoreError> {
        Self::parse_as(s, &Subtypes::default())
    }

    /// [`DevConfig::parse`] with the configured subtypes: a subtype turned
    /// off or renamed away is another daemon's.
    pub fn parse_as(s: &str, subtypes: &Subtypes) -> Result<Option<DevConfig>, BackstoreError> {
        Ok(Self::parse_with_options_as(s, subtypes)?.map(|(c, _)| c))
    }

    /// Parses a `dev_config` string with its options (`thin/p/v;ro`).
    pub fn parse_with_options(s: &str) -> Result<Option<(DevConfig, DevOptions)>, BackstoreError> {
        Self::parse_with_options_as(s, &Subtypes::default())
    }

    /// [`DevConfig::parse_with_options`] with the configured subtypes.
    pub fn parse_with_options_as(
        s: &str,
        subtypes: &Subtypes,
    ) -> Result<Option<(DevConfig, DevOptions)>, BackstoreError> {
        let Some((subtype, rest)) = s.split_once('/') else {
            return Ok(None);
        };
        let (rest, opts) = match rest.split_once(';') {
            Some((rest, opts)) => (rest, Some(opts)),
            None => (rest, None),
        };
        let is = |want: &Option<String>| want.as_deref() == Some(subtype);
        if is(&subtypes.rbd) {
            if s.len() > MAX_DEV_CONFIG {
                return Err(malformed(s, "longer than 255 bytes"));
            }
            let (spec, left) = parse_rbd(rest, opts).map_err(|why| malformed(s, why))?;
            let mut o = match left.is_empty() {
                true => DevOptions::default(),
                false => DevOptions::parse(&left.join(";")).map_err(|why| malformed(s, why))?,
            };
            // A snapshot is served read-only.
            o.read_only |= spec.snap.is_some();
            return Ok(Some((DevConfig::Rbd(spec), o)));
        }
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
        let cfg = parsed.map_err(|why| malformed(s, why))?;
        let opts = opts
            .map(DevOptions::parse)
            .transpose()
            .map_err(|why| malformed(s, why))?
            .unwrap_or_default();
        Ok(Some((cfg, opts)))
    }

    /// The canonical `dev_config` string of this backstore.
    pub fn to_dev_config(&self) -> String {
        match self {
            DevConfig::Thin { pool, volume } => format!("thin/{pool}/{volume}"),
            DevConfig::File { path } => format!("file/{}", path.display()),
            DevConfig::Rbd(spec) => format!("rbd/{}", spec.to_dev_config_rest()),
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
        for s in ["glfs/vol@host/img", "", "thin", "qcow//x.qcow2", "zbc/x"] {
            assert_eq!(DevConfig::parse(s).unwrap(), None, "{s}");
        }
    }

    #[test]
    fn options_follow_a_semicolon() {
        let ro = DevOptions {
            read_only: true,
            ..DevOptions::default()
        };
        for (s, want) in [
            ("thin/p/v;ro", thin("p", "v")),
            (
                "file//x/img.raw;ro",
                DevConfig::File {
                    path: "/x/img.raw".into(),
                },
            ),
        ] {
            assert_eq!(
                DevConfig::parse_with_options(s).unwrap(),
                Some((want, ro)),
                "{s}"
            );
        }
        assert_eq!(
            DevConfig::parse_with_options("thin/p/v").unwrap(),
            Some((thin("p", "v"), DevOptions::default()))
        );
        assert_eq!(ro.to_suffix(), ";ro");
        let both = DevConfig::parse_with_options("thin/p/v;lbppbe=3;ro").unwrap();
        let want = DevOptions {
            read_only: true,
            lbppbe: 3,
        };
        assert_eq!(both, Some((thin("p", "v"), want)));
        assert_eq!(want.to_suffix(), ";ro;lbppbe=3");
        assert_eq!(DevOptions::default().to_suffix(), "");
        for bad in [
            "thin/p/v;",
            "thin/p/v;rw",
            "thin/p/v;ro;",
            "file//x;RO",
            "thin/p/v;ro=1",
        ] {
            assert!(
                matches!(
                    DevConfig::parse_with_options(bad),
                    Err(BackstoreError::BadDevConfig { .. })
                ),
                "{bad}"
            );
            assert!(DevConfig::parse(bad).is_err(), "{bad}");
        }
        // Another daemon's options stay its own.
        let no_rbd = Subtypes {
            rbd: None,
            ..Subtypes::default()
        };
        assert_eq!(
            DevConfig::parse_as("rbd/pool/img;osd_op_timeout=30", &no_rbd).unwrap(),
            None
        );
    }

    fn thin(pool: &str, volume: &str) -> DevConfig {
        DevConfig::Thin {
            pool: pool.into(),
            volume: volume.into(),
        }
    }

    #[test]
    fn rbd_forms() {
        // Served with the `rbd` feature by default; configured here so the
        // parsing is tested in every build.
        let with_rbd = Subtypes {
            rbd: Some("rbd".into()),
            ..Subtypes::default()
        };
        let parse = |s: &str| DevConfig::parse_with_options_as(s, &with_rbd);
        let (c, o) = parse("rbd/rbd/disk_1;conf=/etc/ceph/ceph.conf;id=admin;osd_op_timeout=30")
            .unwrap()
            .unwrap();
        let DevConfig::Rbd(spec) = &c else {
            panic!("{c:?}")
        };
        assert_eq!((spec.pool.as_str(), spec.image.as_str()), ("rbd", "disk_1"));
        assert_eq!(o, DevOptions::default());
        assert_eq!(
            c.to_dev_config(),
            "rbd/rbd/disk_1;conf=/etc/ceph/ceph.conf;id=admin;osd_op_timeout=30"
        );
        // A snapshot is read-only; tcmud's options mix with tcmu-runner's.
        let (c, o) = parse("rbd/p/img@s1;id=u;lbppbe=3").unwrap().unwrap();
        assert!(matches!(&c, DevConfig::Rbd(s) if s.snap.as_deref() == Some("s1")));
        assert!(o.read_only);
        assert_eq!(o.lbppbe, 3);
        for bad in [
            "rbd/",
            "rbd/p",
            "rbd/p/img;",
            "rbd/p/img;bogus=1",
            "rbd/p/img;osd_op_timeout=abc",
            "rbd/p/img@",
            "rbd/p/i g",
        ] {
            assert!(
                matches!(parse(bad), Err(BackstoreError::BadDevConfig { .. })),
                "{bad}"
            );
        }
        let long = format!("rbd/p/img;conf=/{}", "c".repeat(300));
        assert!(parse(&long).is_err());
        // Renamed: `rbd/` is then another daemon's (tcmu-runner's).
        let renamed = Subtypes {
            rbd: Some("tcmud-rbd".into()),
            ..Subtypes::default()
        };
        assert_eq!(DevConfig::parse_as("rbd/p/img", &renamed).unwrap(), None);
        assert!(DevConfig::parse_as("tcmud-rbd/p/img", &renamed)
            .unwrap()
            .is_some());
    }

    #[test]
    fn too_long_is_malformed() {
        let s = format!("thin/p/{}", "v".repeat(300));
        assert!(DevConfig::parse(&s).is_err());
    }
}
