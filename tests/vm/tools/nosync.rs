//! libnosync.so -- the power-cut test's negative controls (`power-cut.sh --control KIND`):
//! preloaded into tcmud (LD_PRELOAD), it makes fsync, fdatasync and sync_file_range
//! (`nosync`), or only fdatasync and sync_file_range (`nodatasync`, built with
//! `--cfg data_only`: the data file's syncs; sled and the seal keep their fsync) return
//! success without doing anything, so a cut loses whatever the guest kernel had not yet
//! written back. The test must then report lost acknowledged writes or an unopenable pool:
//! this shows that it can see them.

/// fsync(2) that does nothing.
#[cfg(not(data_only))]
#[no_mangle]
pub extern "C" fn fsync(_fd: i32) -> i32 {
    0
}

/// fdatasync(2) that does nothing.
#[no_mangle]
pub extern "C" fn fdatasync(_fd: i32) -> i32 {
    0
}

/// sync_file_range(2) that does nothing.
#[no_mangle]
pub extern "C" fn sync_file_range(_fd: i32, _offset: i64, _nbytes: i64, _flags: u32) -> i32 {
    0
}
