use std::fs::OpenOptions;

use super::*;

fn file_io(dir: &std::path::Path) -> FileIo {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("data"))
        .unwrap();
    FileIo::new(f).unwrap()
}

/// A sync with nothing written since the last one makes no `fdatasync`
/// (a snapshot of a volume at rest); every kind of change makes the next
/// sync real again.
#[test]
fn a_sync_after_no_change_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let io = file_io(dir.path());
    io.sync_data().unwrap();
    assert_eq!(
        io.syncs(),
        1,
        "the first sync is real (an earlier process may have written)"
    );
    io.sync_data().unwrap();
    assert_eq!(io.syncs(), 1, "nothing changed: skipped");
    io.write_at(&[1; 4096], 0).unwrap();
    io.sync_data().unwrap();
    io.sync_data().unwrap();
    assert_eq!(io.syncs(), 2, "a write: one real sync");
    io.grow_to(1 << 20).unwrap();
    io.sync_data().unwrap();
    assert_eq!(io.syncs(), 3, "a new length: one real sync");
    io.preallocate(1 << 20, 1 << 16).unwrap();
    io.sync_data().unwrap();
    assert_eq!(io.syncs(), 4, "a preallocation: one real sync");
    let mut back = [0u8; 4096];
    io.read_at(&mut back, 0).unwrap();
    io.sync_data().unwrap();
    assert_eq!(io.syncs(), 4, "a read changes nothing");
    assert_eq!(back, [1; 4096]);
}

/// Writes racing with syncs: after a sync that began once a write had
/// ended, no later sync is skipped while a write ended after it began.
#[test]
fn racing_writes_are_never_left_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let io = std::sync::Arc::new(file_io(dir.path()));
    let writer = {
        let io = std::sync::Arc::clone(&io);
        std::thread::spawn(move || {
            for i in 0..200u64 {
                io.write_at(&[u8::try_from(i).expect("below 200"); 512], i * 512)
                    .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        io.sync_data().unwrap();
    }
    writer.join().unwrap();
    let before = io.syncs();
    io.sync_data().unwrap();
    // the last write ended after the last sync began, or that sync covered it
    let seen = io.changes.load(Ordering::Acquire);
    assert!(io.synced.load(Ordering::Acquire) >= seen);
    assert!(io.syncs() <= before + 1);
}
