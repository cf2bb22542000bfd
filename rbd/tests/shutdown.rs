//! Process exit waits for librados: [`tcmud_rbd::wait_all_shut_down`]
//! counts every cluster handle, whichever thread drops the last image.
//! Its own test binary (own process), so no other test's handles count.
#![cfg(feature = "librbd")]
#![warn(clippy::cast_possible_truncation)]

use std::sync::{mpsc, Arc};
use std::time::Duration;

use tcmud_rbd::{live_clusters, wait_all_shut_down, Cluster, ConnectOptions, Image};

#[test]
fn wait_all_shut_down_waits_for_the_last_image_on_another_thread() {
    let conf = std::env::var_os("TCMUD_TEST_CEPH_CONF").expect(
        "TCMUD_TEST_CEPH_CONF unset: start a cluster with tests/ceph/cluster.sh start DIR \
         and export what `cluster.sh env DIR` prints (tests/run-all.sh does)",
    );
    assert_eq!(live_clusters(), 0, "nothing open yet");
    let cluster = Cluster::connect(&ConnectOptions {
        conf: Some(conf.into()),
        ..ConnectOptions::default()
    })
    .expect("connect");
    let io = cluster.ioctx("rbd").expect("pool rbd");
    drop(cluster);
    let name = format!("ffi-exit-{}", std::process::id());
    io.create_image(&name, 4 << 20).expect("create");
    let image = Image::open(Arc::clone(&io), &name, None, false).expect("open");
    drop(io);
    assert_eq!(live_clusters(), 1, "the image holds its cluster");

    // Another thread holds the image (as the daemon's lock watcher or
    // backstore thread may) until told to let go.
    let (release, held) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = held.recv();
        let io = Arc::clone(image.ioctx());
        drop(image);
        io.remove_image(&name).expect("remove");
    });
    assert_eq!(
        wait_all_shut_down(Duration::from_millis(200)),
        Err(1),
        "an image is still open"
    );
    release.send(()).expect("holder alive");
    // The deadline only bounds a hang: the wait ends when the handle does.
    assert_eq!(wait_all_shut_down(Duration::from_secs(120)), Ok(()));
    assert_eq!(live_clusters(), 0);
    holder.join().expect("holder");
}
