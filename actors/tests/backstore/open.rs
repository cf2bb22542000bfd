//! Backstores from dev_config: thin volumes auto-created in pools opened
//! once per process, raw image files, errors for what is missing, resize.

use std::path::{Path, PathBuf};

use tcmud::backstore::{
    open_backstore, open_backstore_with, BackstoreError, DevConfig, NotCreated, OpenPolicy,
    PoolRegistry, PoolSpec, DEFAULT_BLOCK_SIZE,
};
use tcmud_core::pool::{Pool, PoolConfig};

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
        options: Default::default(),
    }
}

/// A new device (may create), `file//` images under `roots`.
fn create(roots: &[PathBuf]) -> OpenPolicy<'_> {
    OpenPolicy {
        may_create: true,
        file_roots: roots,
    }
}

/// An adopted device: nothing is created.
fn adopted(roots: &[PathBuf]) -> OpenPolicy<'_> {
    OpenPolicy {
        may_create: false,
        file_roots: roots,
    }
}

fn thin(pool: &str, vol: &str) -> DevConfig {
    DevConfig::parse(&format!("thin/{pool}/{vol}"))
        .unwrap()
        .unwrap()
}

#[test]
fn thin_volumes_are_created_and_share_one_pool_handle() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let pool_dir = dir.path().join("pools/p1");
    let reg = PoolRegistry::new(vec![spec("p1", &pool_dir, true)]);
    let a = open_backstore(
        &thin("p1", "a"),
        8 * MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .unwrap();
    // A second volume of the same pool: sled would refuse a second open of
    // the directory, so this only works through the shared handle.
    let b = open_backstore(
        &thin("p1", "b"),
        4 * MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .unwrap();
    assert!(pool_dir.join("tcmud-pool").exists());
    assert_eq!(reg.open_pools().len(), 1);
    let caps = a.backend().caps();
    assert_eq!(caps.block_size, DEFAULT_BLOCK_SIZE);
    assert_eq!(caps.num_blocks * u64::from(caps.block_size), 8 * MIB);
    assert!(caps.thin);
    let data = vec![0xabu8; 4096];
    a.backend().write(16, &data, false).unwrap();
    a.flush().unwrap();
    let mut back = vec![0u8; 4096];
    a.backend().read(16, &mut back).unwrap();
    assert_eq!(back, data);
    b.backend().read(16, &mut back).unwrap();
    assert_eq!(back, vec![0u8; 4096], "volumes are separate");
    reg.flush_all().unwrap();

    // Re-opening an existing volume keeps its data.
    drop((a, b));
    let a2 = open_backstore(
        &thin("p1", "a"),
        8 * MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .unwrap();
    a2.backend().read(16, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn thin_resize_grows_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let reg = PoolRegistry::new(vec![spec("p", dir.path(), true)]);
    let v = open_backstore(
        &thin("p", "v"),
        4 * MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .unwrap();
    v.resize(12 * MIB).unwrap();
    let caps = v.backend().caps();
    assert_eq!(caps.num_blocks * u64::from(caps.block_size), 12 * MIB);
    // The new end is addressable.
    let last = caps.num_blocks - 8;
    v.backend().write(last, &[1u8; 4096], false).unwrap();
}

#[test]
fn missing_things_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let reg = PoolRegistry::new(vec![spec("off", &dir.path().join("none"), false)]);
    assert!(matches!(
        open_backstore(&thin("nosuch", "v"), MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots)),
        Err(BackstoreError::UnknownPool(p)) if p == "nosuch"
    ));
    assert!(matches!(
        open_backstore(
            &thin("off", "v"),
            MIB,
            DEFAULT_BLOCK_SIZE,
            &reg,
            &create(&roots)
        ),
        Err(BackstoreError::PoolMissing { .. })
    ));
    assert!(!dir.path().join("none").exists(), "nothing created");

    let existing = dir.path().join("existing");
    drop(Pool::create(&existing, &spec("e", &existing, false).config).unwrap());
    let reg = PoolRegistry::new(vec![spec("e", &existing, false)]);
    assert!(matches!(
        open_backstore(
            &thin("e", "v"),
            MIB,
            DEFAULT_BLOCK_SIZE,
            &reg,
            &create(&roots)
        ),
        Err(BackstoreError::VolumeMissing { .. })
    ));
}

#[test]
fn file_images_are_created_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let img = dir.path().join("disk.img");
    let cfg = DevConfig::parse(&format!("file/{}", img.display()))
        .unwrap()
        .unwrap();
    let reg = PoolRegistry::default();
    let f = open_backstore(&cfg, 2 * MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots)).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 * MIB);
    f.backend().write(2, &[7u8; 1024], true).unwrap();
    f.flush().unwrap();
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(&on_disk[1024..2048], &[7u8; 1024][..]);
    // Grown online; a shrink is refused.
    f.resize(3 * MIB).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 3 * MIB);
    assert_eq!(f.backend().caps().num_blocks, 3 * MIB / 512);
    assert!(matches!(
        f.resize(MIB),
        Err(BackstoreError::Shrink { have, want, .. }) if have == 3 * MIB && want == MIB
    ));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 3 * MIB);
    // A short existing image is extended to the device size.
    drop(f);
    let f = open_backstore(&cfg, 4 * MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots)).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 * MIB);
    let mut back = [0u8; 1024];
    f.backend().read(2, &mut back).unwrap();
    assert_eq!(back, [7u8; 1024]);
}

#[test]
fn run_executes_on_an_io_thread() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let reg = PoolRegistry::new(vec![spec("p", dir.path(), true)]);
    let v = open_backstore(
        &thin("p", "v"),
        MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .unwrap();
    let name = actix::System::new().block_on(async move {
        v.run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap()
    });
    assert!(name.unwrap().contains("-io"));
}

#[test]
fn the_device_block_size_is_used_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let reg = PoolRegistry::new(vec![spec("p", &dir.path().join("p"), true)]);
    // hw_block_size=4096: the auto-created volume has 4 KiB blocks, so LBA 1
    // is byte 4096.
    let v = open_backstore(&thin("p", "big"), 4 * MIB, 4096, &reg, &create(&roots)).unwrap();
    let caps = v.backend().caps();
    assert_eq!((caps.block_size, caps.num_blocks), (4096, MIB / 4096 * 4));
    v.backend().write(1, &[9u8; 4096], true).unwrap();
    drop(v);
    // The same volume served with another block size would move every LBA.
    let err = open_backstore(&thin("p", "big"), 4 * MIB, 512, &reg, &create(&roots)).err();
    let Some(BackstoreError::BlockSize { have, want, .. }) = err else {
        panic!("expected a block size error, got {err:?}");
    };
    assert_eq!((have, want), (4096, Some(512)));
    let v = open_backstore(&thin("p", "big"), 4 * MIB, 4096, &reg, &create(&roots)).unwrap();
    let mut back = vec![0u8; 4096];
    v.backend().read(1, &mut back).unwrap();
    assert_eq!(back, vec![9u8; 4096]);
    // Not a block size at all.
    for bad in [0, 1000, 256, 1 << 17] {
        assert!(
            matches!(
                open_backstore(&thin("p", "x"), MIB, bad, &reg, &create(&roots)),
                Err(BackstoreError::BlockSize { want: None, .. })
            ),
            "{bad}"
        );
    }
    // A raw image with 4 KiB blocks.
    let img = dir.path().join("disk4k.img");
    let cfg = DevConfig::parse(&format!("file/{}", img.display()))
        .unwrap()
        .unwrap();
    let f = open_backstore(&cfg, MIB, 4096, &reg, &create(&roots)).unwrap();
    f.backend().write(2, &[5u8; 4096], true).unwrap();
    f.flush().unwrap();
    assert_eq!(&std::fs::read(&img).unwrap()[8192..12288], &[5u8; 4096][..]);
}

#[test]
fn file_backstores_are_off_without_roots() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let cfg = DevConfig::parse(&format!("file/{}", img.display()))
        .unwrap()
        .unwrap();
    let err = open_backstore(
        &cfg,
        MIB,
        DEFAULT_BLOCK_SIZE,
        &PoolRegistry::default(),
        &create(&[]),
    )
    .err()
    .unwrap();
    assert!(matches!(err, BackstoreError::FileOff { .. }), "{err}");
    assert!(err.to_string().contains("file_roots"), "{err}");
    assert!(!img.exists(), "nothing created");
}

#[test]
fn file_paths_stay_under_their_root_and_follow_no_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, vec![0x5a; 4096]).unwrap();
    let roots = vec![root.clone()];
    let reg = PoolRegistry::default();
    let open = |p: &Path| {
        let cfg = DevConfig::parse(&format!("file/{}", p.display()))
            .unwrap()
            .unwrap();
        open_backstore(&cfg, MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots))
    };
    // Outside every root.
    let err = open(&secret).err().unwrap();
    assert!(
        matches!(err, BackstoreError::FileOutsideRoots { .. }),
        "{err}"
    );
    // A symlink inside the root, to a file outside it.
    std::os::unix::fs::symlink(&secret, root.join("link.img")).unwrap();
    let err = open(&root.join("link.img")).err().unwrap();
    assert!(err.to_string().contains("symlink"), "{err}");
    // A symlinked directory on the way.
    std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
    assert!(open(&root.join("dirlink/secret")).is_err());
    assert!(open(&root.join("dirlink/new.img")).is_err());
    assert!(
        !outside.join("new.img").exists(),
        "nothing created outside the root"
    );
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        vec![0x5a; 4096],
        "untouched"
    );
    // Neither a regular file nor a block device.
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let err = open(&root.join("fifo")).err().unwrap();
    assert!(matches!(err, BackstoreError::FileType { .. }), "{err}");
    std::fs::create_dir(root.join("adir")).unwrap();
    assert!(open(&root.join("adir")).is_err());
    // A plain file in a subdirectory of the root is served (and created 0600).
    std::fs::create_dir(root.join("sub")).unwrap();
    let f = open(&root.join("sub/ok.img")).unwrap();
    assert_eq!(f.backend().caps().num_blocks * 512, MIB);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("sub/ok.img"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn adopted_devices_never_create_anything() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    // auto_create is on, but the device was adopted: the missing pool stays missing.
    let reg = PoolRegistry::new(vec![spec("p", &dir.path().join("p"), true)]);
    let err = open_backstore(
        &thin("p", "v"),
        MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &adopted(&roots),
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            err,
            BackstoreError::PoolMissing {
                why: NotCreated::Adopted,
                ..
            }
        ),
        "{err}"
    );
    assert!(!dir.path().join("p").exists());
    // The pool exists (made by a new device), a volume does not.
    drop(
        open_backstore(
            &thin("p", "a"),
            MIB,
            DEFAULT_BLOCK_SIZE,
            &reg,
            &create(&roots),
        )
        .unwrap(),
    );
    let err = open_backstore(
        &thin("p", "v"),
        MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &adopted(&roots),
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            err,
            BackstoreError::VolumeMissing {
                why: NotCreated::Adopted,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tcmud volume create"), "{err}");
    // An image file.
    let img = dir.path().join("gone.img");
    let cfg = DevConfig::parse(&format!("file/{}", img.display()))
        .unwrap()
        .unwrap();
    let err = open_backstore(&cfg, MIB, DEFAULT_BLOCK_SIZE, &reg, &adopted(&roots))
        .err()
        .unwrap();
    assert!(matches!(err, BackstoreError::ImageMissing { .. }), "{err}");
    assert!(!img.exists());
}

#[test]
fn volumes_are_not_created_by_default_and_the_error_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let cfg = tcmud::config::from_toml(
        &format!(
            "[[pool]]\nname = \"p\"\npath = \"{}\"\n",
            dir.path().join("p").display()
        ),
        "test",
    )
    .unwrap();
    assert!(!cfg.pools[0].auto_create, "auto_create defaults to off");
    let reg = PoolRegistry::from_config(&cfg.pools);
    let err = open_backstore(
        &thin("p", "v"),
        MIB,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("tcmud pool create"), "{err}");
    assert!(!dir.path().join("p").exists());
}

/// A block device (a loop device over a 3 MiB file) is served at its own size, not
/// the configured one. Needs root and losetup; says so and returns otherwise.
#[test]
fn a_block_device_is_served_at_its_real_size() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    std::fs::write(&backing, vec![0x33u8; usize::try_from(3 * MIB).unwrap()]).unwrap();
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output();
    let dev = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        other => {
            eprintln!("SKIPPED: cannot attach a loop device here: {other:?}");
            return;
        }
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    let _detach = Detach(dev.clone());
    let roots = vec![PathBuf::from("/dev")];
    let cfg = DevConfig::parse(&format!("file/{dev}")).unwrap().unwrap();
    let reg = PoolRegistry::default();
    // The kernel device claims 8 MiB; the block device has 3.
    let f = open_backstore(&cfg, 8 * MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots)).unwrap();
    let caps = f.backend().caps();
    assert_eq!(caps.num_blocks * u64::from(caps.block_size), 3 * MIB);
    assert!(!caps.thin);
    let mut back = vec![0u8; 4096];
    f.backend().read(8, &mut back).unwrap();
    assert_eq!(back, vec![0x33u8; 4096]);
}

#[test]
fn the_pool_keeps_its_configured_metadata_cache() {
    // 300 writes 32 MiB apart: one leaf page each (512 chunks of 64 KiB), far
    // more decoded pages than 1 MiB holds, far fewer than the 64 MiB default.
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let mut s = spec("p", &dir.path().join("p"), true);
    s.options.metadata_cache = MIB;
    let reg = PoolRegistry::new(vec![s]);
    let leaves = 300u64;
    let stride = 32 * MIB;
    let v = open_backstore(
        &thin("p", "wide"),
        leaves * stride,
        DEFAULT_BLOCK_SIZE,
        &reg,
        &create(&roots),
    )
    .unwrap();
    let blocks_per_stride = stride / u64::from(DEFAULT_BLOCK_SIZE);
    let data = vec![0x5au8; 4096];
    for i in 0..leaves {
        v.backend()
            .write(i * blocks_per_stride, &data, false)
            .unwrap();
        if i % 32 == 31 {
            v.flush().unwrap();
        }
    }
    v.flush().unwrap();
    let pool = reg.pool("p", false).unwrap();
    let used = pool.metadata_memory_bytes();
    assert!(
        used <= MIB + (64 << 10),
        "{used} bytes of metadata in memory"
    );
    let mut back = vec![0u8; 4096];
    v.backend()
        .read((leaves - 1) * blocks_per_stride, &mut back)
        .unwrap();
    assert_eq!(back, data);
}

/// `;ro` after the backstore serves it write-protected: the volume or image
/// keeps its blocks, the backend refuses writes and unmaps, and the same
/// backstore without the option is writable again.
#[test]
fn ro_option_opens_volumes_and_images_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![dir.path().to_path_buf()];
    let reg = PoolRegistry::new(vec![spec("p", &dir.path().join("p"), true)]);
    let img = dir.path().join("disk.img");
    for base in ["thin/p/v".to_owned(), format!("file/{}", img.display())] {
        let (cfg, _) = DevConfig::parse_with_options(&base).unwrap().unwrap();
        let rw = open_backstore(&cfg, 2 * MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots)).unwrap();
        rw.backend().write(2, &[7u8; 512], true).unwrap();
        rw.flush().unwrap();
        drop(rw);
        let (cfg, opts) = DevConfig::parse_with_options(&format!("{base};ro"))
            .unwrap()
            .unwrap();
        assert!(opts.read_only, "{base}");
        let ro = open_backstore_with(
            &cfg,
            &opts,
            2 * MIB,
            DEFAULT_BLOCK_SIZE,
            &reg,
            &create(&roots),
        )
        .unwrap();
        let b = ro.backend();
        assert!(b.caps().read_only, "{base}");
        assert!(b.write(2, &[9u8; 512], true).is_err(), "{base}: write");
        if b.caps().thin {
            assert!(b.unmap(2, 1).is_err(), "{base}: unmap");
        }
        assert!(b.write_zeroes(2, 1, false).is_err(), "{base}: write zeroes");
        let mut back = [0u8; 512];
        b.read(2, &mut back).unwrap();
        assert_eq!(back, [7u8; 512], "{base}: data kept");
        drop((b, ro));
        let rw = open_backstore(&cfg, 2 * MIB, DEFAULT_BLOCK_SIZE, &reg, &create(&roots)).unwrap();
        assert!(!rw.backend().caps().read_only, "{base}");
    }
}
