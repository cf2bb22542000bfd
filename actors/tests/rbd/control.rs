//! `tcmud volume snapshot|clone rbd:<pool> …` through the control socket
//! on RBD images the daemon serves (their backstore actors), against the
//! real test cluster (tests/ceph/cluster.sh). Built with the `rbd` feature
//! only.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::util::rbd::*;
use tcmud::backstore::rbd_api::Image;
use tcmud::backstore::{Backstores, DevConfig, OpenRequest, PoolRegistry};
use tcmud::control::daemon::{DaemonControl, View};
use tcmud::control::protocol::DeviceStatus;
use tcmud::control::server::{Server, ServerOptions};
use tcmud::supervisor::ControlView;

const MIB: u64 = 1 << 20;

struct FakeView(Backstores, Vec<DeviceStatus>);

impl View for FakeView {
    fn view(&self) -> Result<ControlView, String> {
        Ok(ControlView {
            devices: self.1.clone(),
            failed: Vec::new(),
            registries: Vec::new(),
            backstores: self.0.clone(),
        })
    }
}

fn tcmud(sock: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcmud"))
        .args(args)
        .env("TCMUD_CONTROL_SOCKET", sock)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn serve(
    backstores: &Backstores,
    dev_config: &str,
    minor: u32,
) -> tcmud::backstore::Attachment {
    let (config, options) = DevConfig::parse_with_options(dev_config).unwrap().unwrap();
    backstores
        .open(OpenRequest {
            config,
            options,
            size_bytes: 8 * MIB,
            block_size: 512,
            registry: Arc::new(PoolRegistry::new(Vec::new())),
            may_create: false,
            file_roots: Vec::new(),
            minor: Some(minor),
        })
        .await
        .unwrap()
}

/// The daemon's control socket in `dir` over `backstores` and the served
/// `devices` (configfs under `dir/cfs`).
fn control_server(
    dir: &std::path::Path,
    backstores: &Backstores,
    devices: Vec<DeviceStatus>,
) -> Server {
    let mut opts = ServerOptions::new(dir.join("control.sock"));
    opts.idle_timeout = Duration::from_secs(30);
    opts.mode = 0o600;
    Server::start(
        opts,
        Arc::new(DaemonControl::new(
            Box::new(FakeView(backstores.clone(), devices)),
            None,
            dir.join("cfs"),
        )),
    )
    .unwrap()
}

// The cluster guard keeps the outage tests (other threads) out for the
// whole test; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[actix::test]
async fn snapshot_and_clone_of_served_images_go_through_their_backstore_actors() {
    let _cluster = cluster();
    let tmp = tempfile::tempdir().unwrap();
    let backstores = Backstores::new();
    let server = control_server(tmp.path(), &backstores, Vec::new());
    let sock = server.path().to_path_buf();
    let name = create_image("ctl-snap", 8 * MIB);
    let conf = conf();
    let head = serve(
        &backstores,
        &format!("rbd/rbd/{name};conf={}", conf.display()),
        3,
    )
    .await;

    // What was written before the snapshot is in it; later writes are not.
    head.handle()
        .backend()
        .write(16, &[0xa5; 512], false)
        .unwrap();
    let (code, out, err) = tcmud(&sock, &["volume", "snapshot", "rbd:rbd", &name, "s1"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, &*format!("snapshot s1 of {name} taken\n"), "")
    );
    head.handle()
        .backend()
        .write(16, &[0x5a; 512], false)
        .unwrap();
    let snap = Image::open(pool(), &name, Some("s1"), true).unwrap();
    let d = Image::wait(|done| snap.aio_read(16 * 512, 512, done)).unwrap();
    assert_eq!(d.buf, vec![0xa5; 512]);
    drop(snap);

    // A clone is made from a served snapshot; of the head it is refused.
    let (code, _, err) = tcmud(
        &sock,
        &["volume", "clone", "rbd:rbd", &format!("{name}@s1"), "x"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not served"), "{err}");
    let at_snap = serve(
        &backstores,
        &format!("rbd/rbd/{name}@s1;conf={}", conf.display()),
        4,
    )
    .await;
    let child = format!("{name}-clone");
    let (code, out, err) = tcmud(
        &sock,
        &["volume", "clone", "rbd:rbd", &format!("{name}@s1"), &child],
    );
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(out, format!("cloned {name}@s1 as {child}\n"));
    // The clone reads the snapshot's data and is writable on its own.
    assert_eq!(read_back(&child, 16 * 512, 512), vec![0xa5; 512]);
    let c = Image::open(pool(), &child, None, false).unwrap();
    let d = Image::wait(|done| c.aio_write(0, vec![7; 512], false, done)).unwrap();
    d.result.unwrap();
    drop(c);
    assert_eq!(
        read_back(&name, 0, 512),
        vec![0; 512],
        "the parent is untouched"
    );

    // Other volume commands on rbd images are refused clearly.
    let (code, _, err) = tcmud(&sock, &["volume", "delete", "rbd:rbd", &name]);
    assert_eq!(code, 2);
    assert!(err.contains("use the rbd CLI"), "{err}");
    drop((head, at_snap));
}

/// Stands in for the kernel: once `dev_size` holds a size, sends the
/// device's RECONFIG (the attachment's resize) as the device actor does.
fn reconfig_on_dev_size(attr: &std::path::Path, head: &tcmud::backstore::Attachment) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let size = loop {
        if let Some(n) = std::fs::read_to_string(attr)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dev_size never written"
        );
        // Polls a file the request writes (no notification from a plain file).
        std::thread::sleep(Duration::from_millis(10));
    };
    futures::executor::block_on(head.resize(size)).unwrap();
}

#[allow(clippy::await_holding_lock)]
#[actix::test]
async fn resize_of_a_served_image_grows_it_through_its_lun() {
    let _cluster = cluster();
    let tmp = tempfile::tempdir().unwrap();
    let backstores = Backstores::new();
    let name = create_image("ctl-resize", 8 * MIB);
    let conf = conf();
    let dev_config = format!("rbd/rbd/{name};conf={}", conf.display());
    let head = serve(&backstores, &dev_config, 5).await;
    let lun = DeviceStatus {
        minor: 5,
        name: "user_1/rz".into(),
        dev_config: dev_config.clone(),
        state: "serving".into(),
        ..DeviceStatus::default()
    };
    let attrib = tmp.path().join("cfs/target/core/user_1/rz/attrib");
    std::fs::create_dir_all(&attrib).unwrap();
    let server = control_server(tmp.path(), &backstores, vec![lun]);
    let sock = server.path().to_path_buf();

    // Shrinking a served image, a snapshot, an image not served: refused,
    // nothing written to configfs.
    let (code, _, err) = tcmud(
        &sock,
        &["volume", "resize", "rbd:rbd", &name, "--size", "4MiB"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot shrink while an initiator uses it"),
        "{err}"
    );
    assert!(err.contains("/dev/uio5"), "{err}");
    let (code, _, err) = tcmud(
        &sock,
        &[
            "volume",
            "resize",
            "rbd:rbd",
            &format!("{name}@s"),
            "--size",
            "16MiB",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("is a snapshot"), "{err}");
    let (code, _, err) = tcmud(
        &sock,
        &["volume", "resize", "rbd:rbd", "nosuch", "--size", "16MiB"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not served by this daemon"), "{err}");
    assert!(!attrib.join("dev_size").exists());

    // Growing: the LUN's dev_size, the kernel's RECONFIG, rbd_resize.
    let (code, out, err) = std::thread::scope(|s| {
        s.spawn(|| reconfig_on_dev_size(&attrib.join("dev_size"), &head));
        tcmud(
            &sock,
            &["volume", "resize", "rbd:rbd", &name, "--size", "16MiB"],
        )
    });
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out,
        format!("resized rbd/{name} to 16 MiB (LUN /dev/uio5 updated)\n")
    );
    assert_eq!(
        std::fs::read_to_string(attrib.join("dev_size")).unwrap(),
        format!("{}\n", 16 * MIB)
    );
    let img = Image::open(pool(), &name, None, true).unwrap();
    assert_eq!(img.info().unwrap().size, 16 * MIB, "the image itself grew");
    drop(img);
    drop(head);
}
