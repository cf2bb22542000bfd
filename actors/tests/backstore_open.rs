//! Backstores from dev_config: thin volumes auto-created in pools opened
//! once per process, raw image files, errors for what is missing, resize.

use std::path::Path;

use tcmud::backstore::{
    open_backstore, BackstoreError, DevConfig, PoolRegistry, PoolSpec, DEFAULT_BLOCK_SIZE,
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
    let pool_dir = dir.path().join("pools/p1");
    let reg = PoolRegistry::new(vec![spec("p1", &pool_dir, true)]);
    let a = open_backstore(&thin("p1", "a"), 8 * MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
    // A second volume of the same pool: sled would refuse a second open of
    // the directory, so this only works through the shared handle.
    let b = open_backstore(&thin("p1", "b"), 4 * MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
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
    let a2 = open_backstore(&thin("p1", "a"), 8 * MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
    a2.backend().read(16, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn thin_resize_grows_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let reg = PoolRegistry::new(vec![spec("p", dir.path(), true)]);
    let v = open_backstore(&thin("p", "v"), 4 * MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
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
    let reg = PoolRegistry::new(vec![spec("off", &dir.path().join("none"), false)]);
    assert!(matches!(
        open_backstore(&thin("nosuch", "v"), MIB, DEFAULT_BLOCK_SIZE, &reg),
        Err(BackstoreError::UnknownPool(p)) if p == "nosuch"
    ));
    assert!(matches!(
        open_backstore(&thin("off", "v"), MIB, DEFAULT_BLOCK_SIZE, &reg),
        Err(BackstoreError::PoolMissing { .. })
    ));
    assert!(!dir.path().join("none").exists(), "nothing created");

    let existing = dir.path().join("existing");
    drop(Pool::create(&existing, &spec("e", &existing, false).config).unwrap());
    let reg = PoolRegistry::new(vec![spec("e", &existing, false)]);
    assert!(matches!(
        open_backstore(&thin("e", "v"), MIB, DEFAULT_BLOCK_SIZE, &reg),
        Err(BackstoreError::VolumeMissing { .. })
    ));
}

#[test]
fn file_images_are_created_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let cfg = DevConfig::parse(&format!("file/{}", img.display()))
        .unwrap()
        .unwrap();
    let reg = PoolRegistry::default();
    let f = open_backstore(&cfg, 2 * MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 * MIB);
    f.backend().write(2, &[7u8; 1024], true).unwrap();
    f.flush().unwrap();
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(&on_disk[1024..2048], &[7u8; 1024][..]);
    assert!(matches!(
        f.resize(3 * MIB),
        Err(BackstoreError::Unsupported(_))
    ));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 * MIB);
    // A short existing image is extended to the device size.
    drop(f);
    let f = open_backstore(&cfg, 4 * MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 * MIB);
    let mut back = [0u8; 1024];
    f.backend().read(2, &mut back).unwrap();
    assert_eq!(back, [7u8; 1024]);
}

#[test]
fn run_executes_on_an_io_thread() {
    let dir = tempfile::tempdir().unwrap();
    let reg = PoolRegistry::new(vec![spec("p", dir.path(), true)]);
    let v = open_backstore(&thin("p", "v"), MIB, DEFAULT_BLOCK_SIZE, &reg).unwrap();
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
    let reg = PoolRegistry::new(vec![spec("p", &dir.path().join("p"), true)]);
    // hw_block_size=4096: the auto-created volume has 4 KiB blocks, so LBA 1
    // is byte 4096.
    let v = open_backstore(&thin("p", "big"), 4 * MIB, 4096, &reg).unwrap();
    let caps = v.backend().caps();
    assert_eq!((caps.block_size, caps.num_blocks), (4096, MIB / 4096 * 4));
    v.backend().write(1, &[9u8; 4096], true).unwrap();
    drop(v);
    // The same volume served with another block size would move every LBA.
    let err = open_backstore(&thin("p", "big"), 4 * MIB, 512, &reg).err();
    let Some(BackstoreError::BlockSize { have, want, .. }) = err else {
        panic!("expected a block size error, got {err:?}");
    };
    assert_eq!((have, want), (4096, Some(512)));
    let v = open_backstore(&thin("p", "big"), 4 * MIB, 4096, &reg).unwrap();
    let mut back = vec![0u8; 4096];
    v.backend().read(1, &mut back).unwrap();
    assert_eq!(back, vec![9u8; 4096]);
    // Not a block size at all.
    for bad in [0, 1000, 256, 1 << 17] {
        assert!(
            matches!(
                open_backstore(&thin("p", "x"), MIB, bad, &reg),
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
    let f = open_backstore(&cfg, MIB, 4096, &reg).unwrap();
    f.backend().write(2, &[5u8; 4096], true).unwrap();
    f.flush().unwrap();
    assert_eq!(&std::fs::read(&img).unwrap()[8192..12288], &[5u8; 4096][..]);
}
