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
//! - `sledflush` (built with `--cfg sled_flush`): the pool as it was before its commits were
//!   made durable: the data file is synced (fdatasync/fsync run, by the raw system call), sled's
//!   flush keeps its `sync_file_range` (not replaced), and every other fsync/fdatasync — of
//!   sled's log, the seal, new files and directories — does nothing.

/// fsync(2) that does nothing (`sledflush`: except on the data file).
#[cfg(not(data_only))]
#[no_mangle]
pub extern "C" fn fsync(fd: i32) -> i32 {
    sync_only_data(fd, SYS_FSYNC)
}

/// fdatasync(2) that does nothing (`nodatasync`: on the data file only; `sledflush`: except on
/// the data file).
#[no_mangle]
pub extern "C" fn fdatasync(fd: i32) -> i32 {
    #[cfg(sled_flush)]
    return sync_only_data(fd, SYS_FDATASYNC);
    #[cfg(not(sled_flush))]
    sync_unless_data(fd)
}

/// sync_file_range(2) that does nothing (`nodatasync`: on the data file only; `sledflush`:
/// not replaced).
#[cfg(not(sled_flush))]
#[no_mangle]
pub extern "C" fn sync_file_range(fd: i32, _offset: i64, _nbytes: i64, _flags: u32) -> i32 {
    sync_unless_data(fd)
}

#[cfg(not(data_only))]
const SYS_FSYNC: i64 = 74; // x86_64
#[cfg(sled_flush)]
const SYS_FDATASYNC: i64 = 75; // x86_64

#[cfg(not(data_only))]
extern "C" {
    fn syscall(number: i64, ...) -> i64;
}

fn is_data(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|p| p.ends_with("data"))
}

/// The real sync `number` of `fd` when it is the pool's data file (`sledflush`); nothing
/// otherwise (`nosync`).
#[cfg(not(data_only))]
fn sync_only_data(fd: i32, number: i64) -> i32 {
    if cfg!(sled_flush) && is_data(fd) {
        // SAFETY: fsync/fdatasync take one int argument and touch no memory of ours.
        return unsafe { syscall(number, i64::from(fd)) } as i32;
    }
    0
}

#[cfg(all(not(data_only), not(sled_flush)))]
fn sync_unless_data(_fd: i32) -> i32 {
    0
}

#[cfg(data_only)]
fn sync_unless_data(fd: i32) -> i32 {
    if is_data(fd) {
        return 0;
    }
    // the real fsync (not replaced in this build) of the same inode
    let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
        return 0;
    };
    match std::fs::File::open(&path).and_then(|f| f.sync_all()) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}
