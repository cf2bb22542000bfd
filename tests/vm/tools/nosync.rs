//! libnosync.so -- the power-cut test's negative controls (`power-cut.sh --control KIND`),
//! preloaded into tcmud (LD_PRELOAD). The test must then report lost acknowledged writes or
//! unopenable pools, which shows that it can see them.
//!
//! - `nosync`: fsync, fdatasync and sync_file_range return success without doing anything.
//! - `nodatasync` (built with `--cfg data_only`): only the pool's data file (a path ending in
//!   `/data`) is never synced; fdatasync and sync_file_range on any other file run an fsync
//!   of it (through a new descriptor: `fsync` itself is not replaced), so the metadata stays
//!   durable and the pools open, but mappings can point at chunks whose data never reached
//!   the disk.

/// fsync(2) that does nothing.
#[cfg(not(data_only))]
#[no_mangle]
pub extern "C" fn fsync(_fd: i32) -> i32 {
    0
}

/// fdatasync(2) that does nothing (`nodatasync`: on the data file only).
#[no_mangle]
pub extern "C" fn fdatasync(fd: i32) -> i32 {
    sync_unless_data(fd)
}

/// sync_file_range(2) that does nothing (`nodatasync`: on the data file only).
#[no_mangle]
pub extern "C" fn sync_file_range(fd: i32, _offset: i64, _nbytes: i64, _flags: u32) -> i32 {
    sync_unless_data(fd)
}

#[cfg(not(data_only))]
fn sync_unless_data(_fd: i32) -> i32 {
    0
}

#[cfg(data_only)]
fn sync_unless_data(fd: i32) -> i32 {
    let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
        return 0;
    };
    if path.ends_with("data") {
        return 0;
    }
    // the real fsync (not replaced in this build) of the same inode
    match std::fs::File::open(&path).and_then(|f| f.sync_all()) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}
