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
use tcmud::control::server::{Server, ServerOptions};
use tcmud::supervisor::ControlView;

const MIB: u64 = 1 << 20;

struct FakeView(Backstores);

impl View for FakeView {
    fn view(&self) -> Result<ControlView, String> {
        Ok(ControlView {
            devices: Vec::new(),
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

// The cluster guard keeps the outage tests (other threads) out for the
// whole test; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
#[actix::test]
async fn snapshot_and_clone_of_served_images_go_through_their_backstore_actors() {
    let _cluster = cluster();
    let tmp = tempfile::tempdir().unwrap();
    let backstores = Backstores::new();
    let mut opts = ServerOptions::new(tmp.path().join("control.sock"));
    opts.idle_timeout = Duration::from_secs(30);
    opts.mode = 0o600;
    let server = Server::start(
        opts,
        Arc::new(DaemonControl::new(
            Box::new(FakeView(backstores.clone())),
            None,
            tmp.path().join("cfs"),
        )),
    )
    .unwrap();
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
