//! Kernel prerequisites, module parameters, uio scan and geometry on a fake tree.

use crate::util::supervisor::*;
use std::fs;
use tcmud::config::DaemonConfig;
use tcmud::supervisor::sysfs::{self, Missing};

#[test]
fn missing_module_then_missing_configfs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DaemonConfig {
        sys_root: dir.path().join("sys"),
        configfs_root: dir.path().join("cfg"),
        ..DaemonConfig::default()
    };
    let err = sysfs::check_prerequisites(&cfg).unwrap_err();
    assert_eq!(
        err,
        Missing::Module(cfg.sys_root.join("module/target_core_user"))
    );
    assert!(err.to_string().contains("target_core_user"));
    fs::create_dir_all(cfg.sys_root.join("module/target_core_user")).unwrap();
    let err = sysfs::check_prerequisites(&cfg).unwrap_err();
    assert_eq!(
        err,
        Missing::Configfs(cfg.configfs_root.join("target/core"))
    );
    assert!(err.to_string().contains("configfs"));
    fs::create_dir_all(cfg.configfs_root.join("target/core")).unwrap();
    sysfs::check_prerequisites(&cfg).unwrap();
}

#[test]
fn module_parameters_are_written_only_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    assert!(!sysfs::set_module_param(&cfg, "block_netlink", "1").unwrap());
    let p = cfg
        .sys_root
        .join("module/target_core_user/parameters/block_netlink");
    fs::write(&p, "0\n").unwrap();
    assert!(sysfs::set_module_param(&cfg, "block_netlink", "1").unwrap());
    assert_eq!(fs::read_to_string(&p).unwrap(), "1");
}

#[test]
fn scan_lists_tcmu_devices_sorted_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    add_kernel_device(&cfg, 10, "tcm-user/1/b/file//x", 4096, 512);
    add_kernel_device(&cfg, 2, "tcm-user/1/a/thin/p/v", 4096, 512);
    for (n, name) in [(3, "tcm-user/zz/c/thin/p/v"), (4, "uio_pci_generic")] {
        let d = cfg.sys_root.join(format!("class/uio/uio{n}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), name).unwrap();
    }
    fs::create_dir_all(cfg.sys_root.join("class/uio/uio5")).unwrap(); // no name file
    let found = sysfs::scan_uio(&cfg);
    let got: Vec<_> = found
        .iter()
        .map(|d| (d.minor, d.uio.dev_config.as_str()))
        .collect();
    assert_eq!(got, vec![(2, "thin/p/v"), (10, "file//x")]);
}

#[test]
fn size_prefers_attrib_then_info_and_block_size_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(sysfs::read_size(d), None);
    assert_eq!(sysfs::read_block_size(d), 512);
    fs::write(
        d.join("info"),
        "Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 4096  HwMaxSectors: 128\n Config: x Size: 67108864 MaxDataAreaMB: 1024\n",
    )
    .unwrap();
    assert_eq!(sysfs::read_size(d), Some(67_108_864));
    assert_eq!(sysfs::read_block_size(d), 4096);
    fs::create_dir_all(d.join("attrib")).unwrap();
    fs::write(d.join("attrib/dev_size"), "1048576\n").unwrap();
    fs::write(d.join("attrib/hw_block_size"), "512\n").unwrap();
    assert_eq!(sysfs::read_size(d), Some(1 << 20));
    assert_eq!(sysfs::read_block_size(d), 512);
}
