//! `CheckConfig` against real pools and image directories.

use super::*;
use tcmud_core::pool::{PoolConfig, PoolOptions};

const MIB: u64 = 1 << 20;

fn spec(name: &str, path: &Path, auto_create: bool) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        path: path.into(),
        config: PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 64 * MIB,
            low_water_pct: 90,
        },
        auto_create,
        options: PoolOptions::default(),
    }
}

/// Pool `p` (held, with volume `v` and snapshot `s`), `auto` (auto_create,
/// held, empty) and `cold` (configured, never opened, its directory empty).
struct Fixture {
    _dir: tempfile::TempDir,
    regs: Vec<Arc<PoolRegistry>>,
    subtypes: Subtypes,
    roots: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let reg = PoolRegistry::new(vec![
            spec("p", &dir.path().join("p"), false),
            spec("cold", &dir.path().join("cold"), false),
        ]);
        let made = spec("p", &dir.path().join("p"), false);
        std::fs::create_dir_all(&made.path).unwrap();
        tcmud_core::pool::Pool::create(&made.path, &made.config).unwrap();
        let p = reg.pool("p", false).unwrap();
        p.create_volume("v", 8 * MIB, 512).unwrap();
        p.snapshot("v", "s").unwrap();
        // A reload added pool `auto` (a registry of its own, as RealFactory
        // does).
        let later = PoolRegistry::new(vec![spec("auto", &dir.path().join("auto"), true)]);
        later.pool("auto", true).unwrap();
        let root = dir.path().join("images");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/img"), vec![0u8; 4096]).unwrap();
        std::os::unix::fs::symlink(root.join("sub/img"), root.join("link")).unwrap();
        Fixture {
            regs: vec![Arc::new(reg), Arc::new(later)],
            subtypes: Subtypes::default(),
            roots: vec![root],
            _dir: dir,
        }
    }

    fn served(&self) -> Served<'_> {
        Served {
            subtypes: &self.subtypes,
            file_roots: &self.roots,
            registries: &self.regs,
        }
    }

    fn check(&self, kind: Kind, cfg: &str) -> Result<String, String> {
        let h = HandlerInfo {
            subtype: match kind {
                Kind::Thin => "thin".into(),
                Kind::File => "file".into(),
                Kind::Rbd => "rbd".into(),
            },
            kind,
        };
        check_config(&h, cfg, &self.served())
    }
}

fn refused(r: Result<String, String>, want: &[&str]) {
    let why = r.expect_err("must be refused");
    for w in want {
        assert!(why.contains(w), "{why:?} lacks {w:?}");
    }
}

#[test]
fn a_served_volume_or_snapshot_is_valid() {
    let f = Fixture::new();
    let ok = f.check(Kind::Thin, "thin/p/v").unwrap();
    assert!(ok.contains("volume p/v: 8 MiB"), "{ok}");
    let ok = f.check(Kind::Thin, "thin/p/v;ro;lbppbe=3").unwrap();
    assert!(ok.contains("volume p/v"), "{ok}");
    let ok = f.check(Kind::Thin, "thin/p/s").unwrap();
    assert!(ok.contains("snapshot (served read-only) p/s"), "{ok}");
}

#[test]
fn malformed_strings_get_the_parsers_reason_and_the_form() {
    let f = Fixture::new();
    refused(
        f.check(Kind::Thin, "thin/p"),
        &[
            "expected thin/<pool>/<volume>",
            "form: thin/<pool>/<volume>",
        ],
    );
    refused(f.check(Kind::Thin, "thin/p/a b"), &["bad volume name"]);
    refused(f.check(Kind::Thin, "thin/p/.."), &["bad volume name"]);
    refused(f.check(Kind::Thin, "thin/p/v;rw"), &["unknown option"]);
    refused(
        f.check(Kind::Thin, "thin/p/v;lbppbe=16"),
        &["lbppbe must be 0-15"],
    );
    let long = format!("thin/p/{}", "v".repeat(300));
    refused(f.check(Kind::Thin, &long), &["longer than 255 bytes"]);
    // Another handler's string, or none at all.
    refused(
        f.check(Kind::Thin, "file//x/img"),
        &["is not a thin config", "thin/<pool>/<volume>"],
    );
    refused(f.check(Kind::Thin, "p/v"), &["is not a thin config"]);
    refused(f.check(Kind::Thin, ""), &["is not a thin config"]);
}

#[test]
fn the_pool_must_be_configured_and_exist() {
    let f = Fixture::new();
    refused(
        f.check(Kind::Thin, "thin/nope/v"),
        &["no pool named \"nope\"", "configured: p, cold, auto"],
    );
    // Configured, never opened, nothing on disk, no auto_create.
    refused(
        f.check(Kind::Thin, "thin/cold/v"),
        &["pool \"cold\" does not exist at", "tcmud pool create"],
    );
}

#[test]
fn a_missing_volume_needs_auto_create() {
    let f = Fixture::new();
    // `p` is held and not auto_create.
    refused(
        f.check(Kind::Thin, "thin/p/w"),
        &[
            "volume \"w\" does not exist in pool \"p\"",
            "tcmud volume create",
            "--size",
        ],
    );
    let ok = f.check(Kind::Thin, "thin/auto/w").unwrap();
    assert!(ok.contains("creates it at the LUN's size"), "{ok}");
}

#[test]
fn images_must_lie_under_file_roots_without_symlinks() {
    let mut f = Fixture::new();
    let root = f.roots[0].display().to_string();
    let ok = f
        .check(Kind::File, &format!("file/{root}/sub/img"))
        .unwrap();
    assert!(ok.contains("4 KiB"), "{ok}");
    let ok = f
        .check(Kind::File, &format!("file/{root}/new.img;ro"))
        .unwrap();
    assert!(ok.contains("created at the LUN's size"), "{ok}");
    refused(
        f.check(Kind::File, &format!("file/{root}/nodir/new.img")),
        &["neither does its directory"],
    );
    refused(
        f.check(Kind::File, &format!("file/{root}/link")),
        &["symlinks are not followed"],
    );
    refused(
        f.check(Kind::File, &format!("file/{root}/sub")),
        &["not a regular file"],
    );
    refused(
        f.check(Kind::File, "file//etc/passwd"),
        &["is not under any of file_roots"],
    );
    refused(f.check(Kind::File, "file/rel/img"), &["must be absolute"]);
    f.roots.clear();
    refused(
        f.check(Kind::File, &format!("file/{root}/sub/img")),
        &["file/ backstores are off", "file_roots"],
    );
}

#[test]
fn renamed_subtypes_are_checked_under_their_name() {
    let mut f = Fixture::new();
    f.subtypes = Subtypes {
        thin: Some("tcmud_thin".into()),
        file: None,
        rbd: None,
    };
    let h = HandlerInfo {
        subtype: "tcmud_thin".into(),
        kind: Kind::Thin,
    };
    assert!(check_config(&h, "tcmud_thin/p/v", &f.served()).is_ok());
    refused(
        check_config(&h, "thin/p/v", &f.served()),
        &["is not a tcmud_thin config"],
    );
}

#[test]
fn only_subtypes_that_are_object_path_elements_get_an_object() {
    let (h, skipped) = handlers(&Subtypes::default());
    let want: &[&str] = if cfg!(feature = "rbd") {
        &["thin", "file", "rbd"]
    } else {
        &["thin", "file"]
    };
    assert_eq!(
        h.iter().map(|h| h.subtype.as_str()).collect::<Vec<_>>(),
        want
    );
    assert!(skipped.is_empty());
    let (h, skipped) = handlers(&Subtypes {
        thin: Some("thin2".into()),
        file: Some("tcmud-file".into()),
        rbd: None,
    });
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].kind, Kind::Thin);
    assert_eq!(skipped[0].subtype, "tcmud-file");
    assert!(skipped[0].to_string().contains("\"tcmud_file\""));
    let (h, _) = handlers(&Subtypes {
        thin: None,
        file: Some("file".into()),
        rbd: None,
    });
    assert_eq!(h.len(), 1);
}

#[test]
fn config_desc_gives_the_form_and_what_is_configured() {
    let f = Fixture::new();
    let thin = HandlerInfo {
        subtype: "thin".into(),
        kind: Kind::Thin,
    };
    let d = config_desc(&thin, &f.served());
    assert!(d.starts_with("<pool>/<volume>[;ro][;lbppbe=N] - "), "{d}");
    assert!(d.contains("configured pools: p, cold, auto"), "{d}");
    let file = HandlerInfo {
        subtype: "file".into(),
        kind: Kind::File,
    };
    let d = config_desc(&file, &f.served());
    assert!(d.starts_with("/<absolute path>"), "{d}");
    assert!(d.contains(&f.roots[0].display().to_string()), "{d}");
}

#[test]
fn rbd_cfgstrings_are_parsed_and_their_conf_must_exist() {
    let mut f = Fixture::new();
    f.subtypes.rbd = Some("rbd".into());
    let ok = f.check(Kind::Rbd, "rbd/rbd/img@s1;id=admin").unwrap();
    assert!(
        ok.contains("rbd/img@s1") && ok.contains("read-only"),
        "{ok}"
    );
    refused(f.check(Kind::Rbd, "rbd/rbd"), &["rbd"]);
    refused(
        f.check(Kind::Rbd, "rbd/rbd/img;conf=/nonexistent/ceph.conf"),
        &["conf=/nonexistent/ceph.conf"],
    );
    refused(f.check(Kind::Rbd, "thin/p/v"), &["is not a rbd config"]);
}
