//! `org.kernel.TCMUService1` on a private bus: a `dbus-daemon` started by the
//! test with system-bus rules (deny by default) plus tcmud's own policy file
//! (`dist/tcmud-dbus.conf`), asked what targetcli-fb asks.
//!
//! Needs `dbus-daemon` (Debian package `dbus-daemon`, installed by .ci/run):
//! without it these tests fail, they do not skip.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tcmud::backstore::{PoolRegistry, PoolSpec};
use tcmud::config::Subtypes;
use tcmud::control::daemon::View;
use tcmud::dbus::{DbusContext, DbusOptions, DbusService, Started, BUS_NAME, INTERFACE, ROOT_PATH};
use tcmud::supervisor::ControlView;
use tcmud_core::pool::{PoolConfig, PoolOptions};
use zbus::zvariant::OwnedValue;

const MIB: u64 = 1 << 20;

/// A private bus; killed on drop.
struct Bus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    /// A `dbus-daemon` with the system bus's default-deny rules and
    /// tcmud's policy file included; returns once it printed its address.
    fn start() -> Bus {
        Bus::start_with(true)
    }

    /// The same bus, with or without tcmud's policy file.
    fn start_with(tcmud_policy: bool) -> Bus {
        let dir = tempfile::tempdir().unwrap();
        let policy = if tcmud_policy {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/tcmud-dbus.conf");
            format!("<include>{}</include>", p.display())
        } else {
            String::new()
        };
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  {}
</busconfig>
"#,
                dir.path().display(),
                policy
            ),
        )
        .unwrap();
        let mut child = match Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run dbus-daemon ({e}): install it (Debian: apt-get install dbus-daemon); \
                 the D-Bus tests need a real bus"
            ),
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
        Bus {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Pools(Vec<Arc<PoolRegistry>>);

impl View for Pools {
    fn view(&self) -> Result<ControlView, String> {
        Ok(ControlView {
            registries: self.0.clone(),
            ..ControlView::default()
        })
    }
}

/// Pool `p` held with volume `vol1`, images under `<dir>/images`.
fn daemon_state(dir: &Path) -> (Vec<Arc<PoolRegistry>>, PathBuf) {
    let reg = PoolRegistry::new(vec![PoolSpec {
        name: "p".into(),
        path: dir.join("p"),
        config: PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 64 * MIB,
            low_water_pct: 90,
        },
        auto_create: false,
        options: PoolOptions::default(),
    }]);
    std::fs::create_dir_all(dir.join("p")).unwrap();
    tcmud_core::pool::Pool::create(
        &dir.join("p"),
        &PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 64 * MIB,
            low_water_pct: 90,
        },
    )
    .unwrap();
    let pool = reg.pool("p", false).unwrap();
    pool.create_volume("vol1", 16 * MIB, 512).unwrap();
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    (vec![Arc::new(reg)], images)
}

fn service(bus: &Bus, dir: &Path, subtypes: Subtypes) -> DbusService {
    let (regs, images) = daemon_state(dir);
    let ctx = DbusContext::new(subtypes, vec![images], Box::new(Pools(regs)));
    DbusService::start(
        DbusOptions {
            address: Some(bus.address.clone()),
        },
        ctx,
    )
    .unwrap()
}

fn started(s: &DbusService) -> Started {
    s.wait_started(Duration::from_secs(60))
        .expect("the D-Bus service said nothing")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(bus: &Bus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

async fn check(conn: &zbus::Connection, subtype: &str, cfg: &str) -> (bool, String) {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            format!("{ROOT_PATH}/{subtype}").as_str(),
            Some(INTERFACE),
            "CheckConfig",
            &(cfg,),
        )
        .await
        .unwrap();
    reply.body().deserialize().unwrap()
}

type Managed = HashMap<
    zbus::zvariant::OwnedObjectPath,
    HashMap<zbus::names::OwnedInterfaceName, HashMap<String, OwnedValue>>,
>;

/// The default subtypes of a build without the `rbd` feature (with it the
/// default adds `rbd`, whose handler these tests do not look at).
fn thin_and_file() -> Subtypes {
    Subtypes {
        thin: Some("thin".into()),
        file: Some("file".into()),
        rbd: None,
    }
}

#[test]
fn targetcli_finds_one_handler_per_subtype_and_checks_cfgstrings() {
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&bus, dir.path(), thin_and_file());
    assert_eq!(
        started(&svc),
        Started::Serving {
            subtypes: vec!["thin".into(), "file".into()]
        }
    );
    let images = dir.path().join("images");
    rt().block_on(async {
        let conn = client(&bus).await;
        // What targetcli's UIBackstores._user_backstores() does.
        let reply = conn
            .call_method(
                Some(BUS_NAME),
                ROOT_PATH,
                Some("org.freedesktop.DBus.ObjectManager"),
                "GetManagedObjects",
                &(),
            )
            .await
            .unwrap();
        let managed: Managed = reply.body().deserialize().unwrap();
        let mut paths: Vec<String> = managed.keys().map(|p| p.as_str().to_owned()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "/org/kernel/TCMUService1/file",
                "/org/kernel/TCMUService1/thin"
            ]
        );
        let thin = managed
            .iter()
            .find(|(p, _)| p.as_str().ends_with("/thin"))
            .map(|(_, v)| v)
            .unwrap();
        let props = thin
            .iter()
            .find(|(i, _)| i.as_str() == "org.kernel.TCMUService1")
            .map(|(_, v)| v)
            .expect("the handler interface");
        let sub: String = props["SubType"].try_clone().unwrap().try_into().unwrap();
        assert_eq!(sub, "thin");
        let desc: String = props["ConfigDesc"].try_clone().unwrap().try_into().unwrap();
        assert!(desc.starts_with("<pool>/<volume>"), "{desc}");
        assert!(desc.contains("configured pools: p"), "{desc}");

        // The introspection data names what tcmu-runner's tcmu-handler.xml does.
        let reply = conn
            .call_method(
                Some(BUS_NAME),
                "/org/kernel/TCMUService1/thin",
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .await
            .unwrap();
        let xml: String = reply.body().deserialize().unwrap();
        for want in [
            r#"<interface name="org.kernel.TCMUService1">"#,
            r#"<method name="CheckConfig">"#,
            r#"<arg name="configstr" type="s" direction="in"/>"#,
            r#"<arg name="is_valid" type="b" direction="out"/>"#,
            r#"<arg name="message" type="s" direction="out"/>"#,
            r#"<property name="ConfigDesc" type="s" access="read">"#,
            r#"<property name="SubType" type="s" access="read">"#,
        ] {
            assert!(xml.contains(want), "introspection lacks {want}:\n{xml}");
        }

        // targetcli's create: CheckConfig("<handler>/<cfgstring>").
        let (ok, msg) = check(&conn, "thin", "thin/p/vol1").await;
        assert!(ok, "{msg}");
        assert!(msg.contains("volume p/vol1: 16 MiB"), "{msg}");
        let (ok, msg) = check(&conn, "thin", "thin/nopool/vol1").await;
        assert!(!ok);
        assert!(msg.contains("no pool named \"nopool\""), "{msg}");
        let (ok, msg) = check(&conn, "thin", "thin/p/missing").await;
        assert!(!ok);
        assert!(msg.contains("tcmud volume create"), "{msg}");
        let (ok, msg) = check(&conn, "thin", "thin/p/bad name").await;
        assert!(!ok);
        assert!(msg.contains("bad volume name"), "{msg}");
        let (ok, msg) = check(&conn, "file", &format!("file/{}/a.img", images.display())).await;
        assert!(ok, "{msg}");
        let (ok, msg) = check(&conn, "file", "file//etc/passwd").await;
        assert!(!ok);
        assert!(msg.contains("not under any of file_roots"), "{msg}");
    });
    drop(svc);
    // Dropping the service gives the name back.
    rt().block_on(async {
        let conn = client(&bus).await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let owned = dbus
            .name_has_owner(BUS_NAME.try_into().unwrap())
            .await
            .unwrap();
        assert!(!owned, "the name stays owned after the service stopped");
    });
}

#[test]
fn a_name_owned_by_another_daemon_is_left_to_it() {
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = rt();
    // "tcmu-runner": another connection owns the name first.
    let other = runtime.block_on(async {
        let c = client(&bus).await;
        c.request_name(BUS_NAME).await.unwrap();
        c
    });
    let svc = service(&bus, dir.path(), thin_and_file());
    assert_eq!(
        started(&svc),
        Started::NameTaken {
            owner_pid: Some(std::process::id())
        }
    );
    runtime.block_on(async {
        let dbus = zbus::fdo::DBusProxy::new(&other).await.unwrap();
        let owner = dbus
            .get_name_owner(BUS_NAME.try_into().unwrap())
            .await
            .unwrap();
        assert_eq!(owner.as_str(), other.unique_name().unwrap().as_str());
    });
}

#[test]
fn without_tcmuds_policy_the_system_bus_refuses_the_name() {
    let bus = Bus::start_with(false);
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&bus, dir.path(), thin_and_file());
    match started(&svc) {
        Started::Refused(why) => assert!(why.contains("AccessDenied"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn subtypes_that_cannot_be_object_names_are_not_offered() {
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let svc = service(
        &bus,
        dir.path(),
        Subtypes {
            thin: Some("thin".into()),
            file: Some("tcmud-file".into()),
            rbd: None,
        },
    );
    assert_eq!(
        started(&svc),
        Started::Serving {
            subtypes: vec!["thin".into()]
        }
    );
}

#[test]
fn no_bus_means_no_dbus_and_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let (regs, images) = daemon_state(dir.path());
    let ctx = DbusContext::new(thin_and_file(), vec![images], Box::new(Pools(regs)));
    let svc = DbusService::start(
        DbusOptions {
            address: Some(format!("unix:path={}/no-bus", dir.path().display())),
        },
        ctx,
    )
    .unwrap();
    assert!(matches!(started(&svc), Started::NoBus(_)));
}
