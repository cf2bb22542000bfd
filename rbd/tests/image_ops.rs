//! The safe API against a real cluster (tests/ceph/cluster.sh; its conf in
//! TCMUD_TEST_CEPH_CONF). Without one these tests fail: the `librbd`
//! feature means "test against Ceph".
#![cfg(feature = "librbd")]
#![warn(clippy::cast_possible_truncation)]

use std::sync::Arc;

use tcmud_rbd::{Cluster, ConnectOptions, Image, IoCtx};

fn pool() -> Arc<IoCtx> {
    let conf = std::env::var_os("TCMUD_TEST_CEPH_CONF").expect(
        "TCMUD_TEST_CEPH_CONF unset: start a cluster with tests/ceph/cluster.sh start DIR \
         and export what `cluster.sh env DIR` prints (tests/run-all.sh does)",
    );
    let c = Cluster::connect(&ConnectOptions {
        conf: Some(conf.into()),
        ..ConnectOptions::default()
    })
    .expect("connect");
    c.ioctx("rbd").expect("pool rbd")
}

/// A name no earlier run used (images with snapshots are not removed).
fn unique(name: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{t}", std::process::id())
}

fn fresh(io: &Arc<IoCtx>, name: &str, size: u64) -> Image {
    io.create_image(name, size).expect("create");
    Image::open(Arc::clone(io), name, None, false).expect("open")
}

#[test]
fn write_read_flush_discard_allocation() {
    let io = pool();
    let img = fresh(&io, &unique("ffi-rw"), 8 << 20);
    assert_eq!(img.size().unwrap(), 8 << 20);
    assert!(!img.id().unwrap().is_empty());
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let d = Image::wait(|done| img.aio_write(4096, data.clone(), true, done)).unwrap();
    d.result.unwrap();
    Image::wait(|done| img.aio_flush(done))
        .unwrap()
        .result
        .unwrap();
    let d = Image::wait(|done| img.aio_read(4096, 8192, done)).unwrap();
    assert_eq!(d.result, Ok(8192));
    assert_eq!(d.buf, data);
    let mut ext = Vec::new();
    img.diff_iterate(0, 8 << 20, &mut |e| {
        ext.push(e);
        true
    })
    .unwrap();
    // Without the object-map feature librbd reports at most object
    // granularity: the written range lies inside the one reported extent.
    assert_eq!(ext.len(), 1, "{ext:?}");
    assert!(ext[0].exists && ext[0].offset <= 4096 && ext[0].offset + ext[0].len >= 12288);
    // write_zeroes reads back as zeros, also below the discard granularity
    // (a plain discard of 8 KiB is skipped: rbd_discard_granularity_bytes).
    Image::wait(|done| img.aio_write_zeroes(4096, 4096, done))
        .unwrap()
        .result
        .unwrap();
    let d = Image::wait(|done| img.aio_read(4096, 8192, done)).unwrap();
    assert!(d.buf[..4096].iter().all(|&b| b == 0));
    assert_eq!(&d.buf[4096..], &data[4096..]);
    // Zeroing a whole object deallocates it.
    Image::wait(|done| img.aio_write_zeroes(0, 4 << 20, done))
        .unwrap()
        .result
        .unwrap();
    let mut n = 0;
    img.diff_iterate(0, 8 << 20, &mut |_| {
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 0, "discarded range still allocated");
}

#[test]
fn compare_and_write_and_writesame() {
    let io = pool();
    let img = fresh(&io, &unique("ffi-caw"), 4 << 20);
    let d = Image::wait(|done| img.aio_writesame(0, 4096, vec![7u8; 512], false, done)).unwrap();
    d.result.unwrap();
    let mut cmp = vec![7u8; 512];
    let d = Image::wait(|done| img.aio_compare_and_write(0, cmp.clone(), vec![9u8; 512], done));
    d.unwrap().result.unwrap();
    cmp[100] = 1;
    let d = Image::wait(|done| img.aio_compare_and_write(512, cmp, vec![8u8; 512], done)).unwrap();
    assert!(d.result.as_ref().unwrap_err().is_miscompare(), "{d:?}");
    assert_eq!(d.mismatch_offset, Some(100));
    let d = Image::wait(|done| img.aio_read(0, 1024, done)).unwrap();
    assert_eq!(&d.buf[..512], &[9u8; 512][..]);
    assert_eq!(&d.buf[512..], &[7u8; 512][..], "a miscompare wrote");
}

#[test]
fn snapshot_clone_resize_and_missing_image() {
    let io = pool();
    let err = Image::open(Arc::clone(&io), "ffi-no-such-image", None, false).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let (name, clone) = (unique("ffi-snap"), unique("ffi-clone"));
    let img = fresh(&io, &name, 4 << 20);
    Image::wait(|done| img.aio_write(0, vec![5u8; 4096], false, done))
        .unwrap()
        .result
        .unwrap();
    img.snap_create("s1").unwrap();
    img.snap_protect("s1").unwrap();
    Image::wait(|done| img.aio_write(0, vec![6u8; 4096], false, done))
        .unwrap()
        .result
        .unwrap();
    let snap = Image::open(Arc::clone(&io), &name, Some("s1"), false).unwrap();
    assert!(snap.is_read_only());
    let d = Image::wait(|done| snap.aio_read(0, 4096, done)).unwrap();
    assert_eq!(d.buf, vec![5u8; 4096]);
    let d = Image::wait(|done| snap.aio_write(0, vec![1u8; 512], false, done)).unwrap();
    assert!(d.result.is_err(), "a snapshot took a write");
    io.clone_image(&name, "s1", &clone).unwrap();
    let cl = Image::open(Arc::clone(&io), &clone, None, false).unwrap();
    let d = Image::wait(|done| cl.aio_read(0, 4096, done)).unwrap();
    assert_eq!(d.buf, vec![5u8; 4096]);
    img.resize(8 << 20).unwrap();
    assert_eq!(img.size().unwrap(), 8 << 20);
    drop(cl);
    io.remove_image(&clone).unwrap();
}

#[test]
fn exclusive_lock_owner_and_owners_seen_from_another_client() {
    let name = unique("ffi-lock");
    let a = fresh(&pool(), &name, 4 << 20);
    // A second client (its own connection), as another daemon would be.
    let b = Image::open(pool(), &name, None, false).expect("open b");
    assert!(!a.is_lock_owner().unwrap());
    assert_eq!(b.lock_owners().unwrap(), Vec::<String>::new(), "nobody yet");
    // A write takes the lock.
    Image::wait(|done| a.aio_write(0, vec![1; 4096], false, done))
        .unwrap()
        .result
        .unwrap();
    assert!(a.is_lock_owner().unwrap());
    assert!(!b.is_lock_owner().unwrap());
    let owners = b.lock_owners().unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    // A write through the other client moves it (cooperative release).
    Image::wait(|done| b.aio_write(4096, vec![2; 4096], false, done))
        .unwrap()
        .result
        .unwrap();
    assert!(b.is_lock_owner().unwrap());
    assert!(!a.is_lock_owner().unwrap());
}

#[test]
fn metadata_set_and_get_seen_from_another_client() {
    let name = unique("ffi-meta");
    let a = fresh(&pool(), &name, 4 << 20);
    let b = Image::open(pool(), &name, None, false).expect("open b");
    assert_eq!(
        b.metadata_get("tcmud_test").unwrap(),
        None,
        "no such key yet"
    );
    a.metadata_set("tcmud_test", "group=2,client=x").unwrap();
    assert_eq!(
        b.metadata_get("tcmud_test").unwrap().as_deref(),
        Some("group=2,client=x")
    );
    // Longer than the first buffer: read back whole.
    let long = "v".repeat(1000);
    b.metadata_set("tcmud_test", &long).unwrap();
    assert_eq!(a.metadata_get("tcmud_test").unwrap(), Some(long));
    assert!(
        a.metadata_set("bad\0key", "v").is_err(),
        "NUL in a key refused"
    );
}

/// Runs a vectored operation and waits for it: its outcome and its buffers.
fn wait_v<B: Send + 'static>(
    start: impl FnOnce(Box<dyn FnOnce(tcmud_rbd::AioDone, B) + Send>) -> Result<(), tcmud_rbd::RbdError>,
) -> (tcmud_rbd::AioDone, B) {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let _ = start(Box::new(move |d, b| {
        let _ = tx.send((d, b));
    }));
    rx.recv().expect("completion ran")
}

#[test]
fn vectored_write_and_read_in_place() {
    let io = pool();
    let img = fresh(&io, &unique("ffi-iov"), 8 << 20);
    let bytes: Vec<u8> = (0..12288u32).map(|i| (i % 253) as u8 ^ 0x5a).collect();
    // Three buffers of uneven sizes written as one range at 1 MiB.
    let spans = vec![
        bytes[..4096].to_vec(),
        bytes[4096..4608].to_vec(),
        bytes[4608..].to_vec(),
    ];
    let (d, back) = wait_v(|done| img.aio_writev(1 << 20, spans, false, done));
    assert_eq!(d.result, Ok(0), "rbd_aio_writev");
    assert_eq!(back.len(), 3, "the buffers come back with the completion");
    // One buffer with FUA (rbd_aio_write2 on it).
    let (d, _) = wait_v(|done| img.aio_writev(2 << 20, vec![bytes[..4096].to_vec()], true, done));
    assert_eq!(d.result, Ok(0), "single-buffer write");
    // Read back whole, then in place into two buffers split elsewhere.
    let d = Image::wait(|done| img.aio_read(1 << 20, bytes.len(), done)).unwrap();
    assert!(d.buf == bytes, "the three buffers landed in order");
    let (d, got) =
        wait_v(|done| img.aio_readv(1 << 20, vec![vec![0u8; 3000], vec![0u8; 9288]], done));
    assert_eq!(d.result, Ok(12288), "rbd_aio_readv");
    assert!(got.concat() == bytes, "read into the two buffers in order");
    let (d, got) = wait_v(|done| img.aio_readv(2 << 20, vec![vec![0xffu8; 4096]], done));
    assert_eq!(d.result, Ok(4096));
    assert!(got[0] == bytes[..4096], "the single-buffer write");
    // No buffers: refused, and the closure still runs once with the error.
    let (d, _) = wait_v(|done| img.aio_readv(0, Vec::<Vec<u8>>::new(), done));
    assert!(
        d.result.is_err(),
        "an empty iovec list is refused: {:?}",
        d.result
    );
}
