//! `rbd/<pool>/<image>[@<snap>][;conf=<path>][;id=<user>][;osd_op_timeout=<s>]`:
//! tcmu-runner's rbd handler's cfgstring, so a LUN made for it is served
//! unchanged, plus `@<snap>` (served read-only) and tcmud's own `;ro`,
//! `;lbppbe=N`. Hostile input is refused with the reason.

use std::path::{Component, PathBuf};

/// The longest `osd_op_timeout` accepted, in seconds (a day).
const MAX_OSD_OP_TIMEOUT: u32 = 86_400;

/// An RBD image (or one of its snapshots) and how to reach its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdSpec {
    /// Pool name.
    pub pool: String,
    /// Image name.
    pub image: String,
    /// Snapshot (`@snap`): served read-only.
    pub snap: Option<String>,
    /// `conf=`: the cluster's configuration file (absolute); librados'
    /// default search when absent.
    pub conf: Option<PathBuf>,
    /// `id=`: the client id (cephx user without `client.`).
    pub id: Option<String>,
    /// `osd_op_timeout=`: seconds before an OSD operation fails with a
    /// timeout (librados' `rados_osd_op_timeout`); none: wait for ever.
    pub osd_op_timeout: Option<u32>,
}

impl RbdSpec {
    /// The image's name in the pool, with `@snap`.
    pub fn image_ref(&self) -> String {
        match &self.snap {
            Some(s) => format!("{}/{}@{s}", self.pool, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }

    /// The `dev_config` text after the subtype's `/` (options included).
    pub fn to_dev_config_rest(&self) -> String {
        let mut s = self.image_ref();
        if let Some(c) = &self.conf {
            s.push_str(&format!(";conf={}", c.display()));
        }
        if let Some(i) = &self.id {
            s.push_str(&format!(";id={i}"));
        }
        if let Some(t) = self.osd_op_timeout {
            s.push_str(&format!(";osd_op_timeout={t}"));
        }
        s
    }
}

/// Pool, image and snapshot names: 1..=128 bytes of `[A-Za-z0-9._:+-]`
/// (no `/`, `@`, `;`, spaces or control bytes), not `.`/`..`.
fn rbd_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._:+-".contains(c);
    !name.is_empty() && name.len() <= 128 && name != "." && name != ".." && name.chars().all(ok)
}

/// Parses what follows `rbd/` up to the first `;` (`rest`) and the RBD
/// options among `opts` (split on `;`); returns the spec and the options
/// left for [`super::DevOptions`].
pub(super) fn parse_rbd<'a>(
    rest: &str,
    opts: Option<&'a str>,
) -> Result<(RbdSpec, Vec<&'a str>), &'static str> {
    let (pool, image) = rest
        .split_once('/')
        .ok_or("expected rbd/<pool>/<image>[@<snap>]")?;
    let (image, snap) = match image.split_once('@') {
        Some((i, s)) => (i, Some(s)),
        None => (image, None),
    };
    if !rbd_name(pool) {
        return Err("bad pool name (1-128 of A-Z a-z 0-9 . _ : + -)");
    }
    if !rbd_name(image) {
        return Err("bad image name (1-128 of A-Z a-z 0-9 . _ : + -)");
    }
    if snap.is_some_and(|s| !rbd_name(s)) {
        return Err("bad snapshot name (1-128 of A-Z a-z 0-9 . _ : + -)");
    }
    let mut spec = RbdSpec {
        pool: pool.to_owned(),
        image: image.to_owned(),
        snap: snap.map(str::to_owned),
        conf: None,
        id: None,
        osd_op_timeout: None,
    };
    let mut left = Vec::new();
    for opt in opts
        .map(|o| o.split(';').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        match opt.split_once('=') {
            Some(("conf", p)) => {
                if spec.conf.is_some() {
                    return Err("conf= given twice");
                }
                spec.conf = Some(conf_path(p)?);
            }
            Some(("id", i)) => {
                if spec.id.is_some() {
                    return Err("id= given twice");
                }
                let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
                if i.is_empty() || i.len() > 64 || !i.chars().all(ok) {
                    return Err("bad id= (1-64 of A-Z a-z 0-9 . _ -)");
                }
                spec.id = Some(i.to_owned());
            }
            Some(("osd_op_timeout", t)) => {
                if spec.osd_op_timeout.is_some() {
                    return Err("osd_op_timeout= given twice");
                }
                spec.osd_op_timeout = Some(
                    t.parse::<u32>()
                        .ok()
                        .filter(|t| (1..=MAX_OSD_OP_TIMEOUT).contains(t))
                        .ok_or("osd_op_timeout must be whole seconds, 1-86400")?,
                );
            }
            _ => left.push(opt),
        }
    }
    Ok((spec, left))
}

fn conf_path(p: &str) -> Result<PathBuf, &'static str> {
    let path = PathBuf::from(p);
    if p.is_empty() || !path.is_absolute() {
        return Err("conf= must be an absolute path");
    }
    if p.contains('\0') || path.components().any(|c| c == Component::ParentDir) {
        return Err("conf= path with NUL or '..'");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcmu_runner_cfgstrings_parse() {
        let (s, left) = parse_rbd(
            "rbd/disk_1",
            Some("conf=/etc/ceph/ceph.conf;id=admin;osd_op_timeout=30"),
        )
        .unwrap();
        assert_eq!(
            s,
            RbdSpec {
                pool: "rbd".into(),
                image: "disk_1".into(),
                snap: None,
                conf: Some("/etc/ceph/ceph.conf".into()),
                id: Some("admin".into()),
                osd_op_timeout: Some(30),
            }
        );
        assert!(left.is_empty());
        assert_eq!(
            s.to_dev_config_rest(),
            "rbd/disk_1;conf=/etc/ceph/ceph.conf;id=admin;osd_op_timeout=30"
        );
        let (s, left) = parse_rbd("p/img@snap1", Some("ro;lbppbe=3")).unwrap();
        assert_eq!(s.snap.as_deref(), Some("snap1"));
        assert_eq!(left, vec!["ro", "lbppbe=3"]);
    }

    #[test]
    fn hostile_cfgstrings_are_refused() {
        for (rest, opts) in [
            ("", None),
            ("p", None),
            ("p/", None),
            ("/img", None),
            ("p/img/x", None),
            ("p/img@", None),
            ("p/img@a@b", None),
            ("p/..", None),
            ("p/a b", None),
            ("p/img\u{0}", None),
            ("p/img", Some("conf=")),
            ("p/img", Some("conf=relative.conf")),
            ("p/img", Some("conf=/etc/../x")),
            ("p/img", Some("conf=/a;conf=/b")),
            ("p/img", Some("id=")),
            ("p/img", Some("id=a/b")),
            ("p/img", Some("osd_op_timeout=0")),
            ("p/img", Some("osd_op_timeout=-1")),
            ("p/img", Some("osd_op_timeout=1e9")),
            ("p/img", Some("osd_op_timeout=99999999999")),
        ] {
            assert!(parse_rbd(rest, opts).is_err(), "{rest:?} {opts:?}");
        }
    }
}
