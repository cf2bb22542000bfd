//! Beside other TCMU daemons: tcmud's subtypes are configurable (a kind can be
//! turned off or renamed away from tcmu-runner's `file`), and module-wide
//! settings (block/reset netlink, the reply flag) are changed only when no
//! other daemon's TCMU device exists (`module_params = "auto"`), never in
//! `"shared"` mode.

use std::fs;
use std::path::Path;
use tcmud::config::{from_toml, DaemonConfig, ModuleParams, Subtypes};
use tcmud::supervisor::coexist::{exclusive, send_set_features, NetlinkBlock};
use tcmud::supervisor::real::classify_as;
use tcmud::supervisor::Ownership;

#[test]
fn subtypes_can_be_renamed_or_turned_off() {
    let cfg = from_toml(
        "[daemon.subtypes]\nthin = \"tcmud-thin\"\nfile = \"\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.subtypes,
        Subtypes {
            thin: Some("tcmud-thin".into()),
            file: None,
            ..Subtypes::default()
        }
    );
    let s = &cfg.subtypes;
    assert_eq!(classify_as("file//var/img", s), Ownership::Foreign);
    assert_eq!(classify_as("thin/p/v", s), Ownership::Foreign);
    assert_eq!(classify_as("tcmud-thin/p/v", s), Ownership::Ours);
    assert!(matches!(
        classify_as("tcmud-thin/p", s),
        Ownership::Invalid(_)
    ));
    // Defaults as before.
    let d = Subtypes::default();
    assert_eq!(classify_as("file//var/img", &d), Ownership::Ours);
    assert_eq!(classify_as("qcow//x", &d), Ownership::Foreign);
}

#[test]
fn bad_subtypes_are_reported() {
    let e = from_toml(
        "[daemon.subtypes]\nthin = \"a/b\"\nfile = \"a/b\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("daemon.subtypes.thin"), "{e}");
    assert!(e.contains("is not a subtype"), "{e}");
    assert!(e.contains("both use"), "{e}");
}

/// A fake /sys with target_core_user's parameters at 0 and the given uio names.
fn sys(root: &Path, uios: &[&str]) -> DaemonConfig {
    let cfg = DaemonConfig {
        sys_root: root.join("sys"),
        ..DaemonConfig::default()
    };
    let params = cfg.sys_root.join("module/target_core_user/parameters");
    fs::create_dir_all(&params).unwrap();
    fs::write(params.join("block_netlink"), "0").unwrap();
    fs::write(params.join("reset_netlink"), "0").unwrap();
    for (i, name) in uios.iter().enumerate() {
        let d = cfg.sys_root.join(format!("class/uio/uio{i}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), format!("{name}\n")).unwrap();
    }
    cfg
}

fn param(cfg: &DaemonConfig, name: &str) -> String {
    fs::read_to_string(
        cfg.sys_root
            .join("module/target_core_user/parameters")
            .join(name),
    )
    .unwrap()
}

fn own(cfg: &DaemonConfig) -> impl Fn(&str) -> Ownership + '_ {
    |d| classify_as(d, &cfg.subtypes)
}

#[test]
fn module_parameters_are_left_alone_beside_another_daemons_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sys(
        dir.path(),
        &["tcm-user/1/mine/thin/p/v", "tcm-user/2/theirs/qcow//img"],
    );
    assert!(!exclusive(&cfg, own(&cfg)));
    {
        let _block = NetlinkBlock::engage(&cfg, exclusive(&cfg, own(&cfg)));
        assert_eq!(param(&cfg, "block_netlink"), "0");
    }
    assert_eq!(param(&cfg, "reset_netlink"), "0");
    // Replies off: the reply flag another daemon may have set is not cleared.
    assert!(!send_set_features(&cfg, false));
    let on = DaemonConfig {
        netlink_replies: true,
        ..cfg.clone()
    };
    assert!(send_set_features(&on, false));
}

#[test]
fn alone_tcmud_blocks_and_resets_netlink_during_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sys(dir.path(), &["tcm-user/1/mine/thin/p/v"]);
    assert!(exclusive(&cfg, own(&cfg)));
    {
        let _block = NetlinkBlock::engage(&cfg, true);
        assert_eq!(param(&cfg, "block_netlink"), "1");
        assert_eq!(param(&cfg, "reset_netlink"), "1");
    }
    assert_eq!(param(&cfg, "block_netlink"), "0", "released");
    assert!(send_set_features(&cfg, true));
}

#[test]
fn module_params_setting_overrides_the_detection() {
    let dir = tempfile::tempdir().unwrap();
    let lone = sys(dir.path(), &[]);
    let shared = DaemonConfig {
        module_params: ModuleParams::Shared,
        ..lone.clone()
    };
    assert!(!exclusive(&shared, own(&shared)));
    let dir2 = tempfile::tempdir().unwrap();
    let crowded = DaemonConfig {
        module_params: ModuleParams::Exclusive,
        ..sys(dir2.path(), &["tcm-user/2/theirs/qcow//img"])
    };
    assert!(exclusive(&crowded, own(&crowded)));
    // A renamed-away file subtype is another daemon's device.
    let dir3 = tempfile::tempdir().unwrap();
    let renamed = DaemonConfig {
        subtypes: Subtypes {
            thin: Some("thin".into()),
            file: Some("tcmud-file".into()),
            ..Subtypes::default()
        },
        ..sys(dir3.path(), &["tcm-user/2/runner/file//img"])
    };
    assert!(!exclusive(&renamed, own(&renamed)));
    assert_eq!(
        from_toml("[daemon]\nmodule_params = \"shared\"\n", "t")
            .unwrap()
            .module_params,
        ModuleParams::Shared
    );
}
