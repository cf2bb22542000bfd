//! The write-cache setting a device starts with comes from configfs
//! (`attrib/emulate_write_cache`), so a restarted daemon reports what the
//! initiator was told before; unreadable means write-through.

use tcmud::device::configfs_write_cache;

#[test]
fn write_cache_follows_configfs_and_defaults_to_write_through() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev0");
    // No attrib/ directory at all: write-through.
    assert!(!configfs_write_cache(&dev));
    std::fs::create_dir_all(dev.join("attrib")).unwrap();
    std::fs::write(dev.join("attrib/emulate_write_cache"), "1\n").unwrap();
    assert!(configfs_write_cache(&dev));
    std::fs::write(dev.join("attrib/emulate_write_cache"), "0\n").unwrap();
    assert!(!configfs_write_cache(&dev));
}
