//! Offline commands run against real pool directories.

use super::*;
use tcmud_core::pool::PoolErrorKind;

fn run_p(cmd: PoolCommand) -> (Result<Outcome, OfflineError>, String) {
    let mut out = Vec::new();
    let r = run_pool(&cmd, &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn run_v(cmd: VolumeCommand) -> (Result<Outcome, OfflineError>, String) {
    let mut out = Vec::new();
    let r = run_volume(&cmd, &mut out);
    (r, String::from_utf8(out).unwrap())
}

#[test]
fn create_volumes_snapshot_clone_info_check() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let (r, _) = run_p(PoolCommand::Create {
        dir: dir.clone(),
        chunk_size: 4096,
        capacity: 1 << 20,
        low_water: 80,
    });
    assert_eq!(r.unwrap(), Outcome::Ok);
    let (r, _) = run_v(VolumeCommand::Create {
        dir: dir.clone(),
        name: "a".into(),
        size: 64 << 10,
        block_size: 512,
    });
    r.unwrap();
    run_v(VolumeCommand::Snapshot {
        dir: dir.clone(),
        volume: "a".into(),
        snapshot: "s".into(),
    })
    .0
    .unwrap();
    run_v(VolumeCommand::Clone {
        dir: dir.clone(),
        snapshot: "s".into(),
        new_volume: "c".into(),
    })
    .0
    .unwrap();
    run_v(VolumeCommand::Resize {
        dir: dir.clone(),
        name: "c".into(),
        size: 128 << 10,
        force: false,
    })
    .0
    .unwrap();
    let (r, text) = run_p(PoolCommand::Info {
        dir: dir.clone(),
        json: true,
    });
    r.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["chunk_size"], 4096);
    assert_eq!(v["capacity_chunks"], 256);
    assert_eq!(v["allocated_chunks"], 0);
    assert_eq!(v["free_chunks"], 256);
    let vols = v["volumes"].as_array().unwrap();
    let names: Vec<_> = vols.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "c", "s"]);
    assert_eq!(vols[1]["size_bytes"], 128 << 10);
    assert_eq!(vols[1]["origin"], "s");
    assert_eq!(vols[2]["kind"], "snapshot");
    let ids: Vec<_> = vols
        .iter()
        .map(|v| v["identity"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|i| i.len() == 32) && ids[0] != ids[1] && ids[1] != ids[2],
        "each volume its own 32-hex-digit identity: {ids:?}"
    );
    let (r, text) = run_v(VolumeCommand::List {
        dir: dir.clone(),
        json: false,
    });
    r.unwrap();
    assert!(
        text.contains("snapshot") && text.contains("128 KiB"),
        "{text}"
    );
    let (r, text) = run_p(PoolCommand::Check {
        dir: dir.clone(),
        json: false,
        repair: false,
    });
    assert_eq!(r.unwrap(), Outcome::Ok);
    assert!(text.starts_with("clean: 3 volumes"), "{text}");
    run_v(VolumeCommand::Delete {
        dir: dir.clone(),
        name: "s".into(),
    })
    .0
    .unwrap();
    let (_, text) = run_v(VolumeCommand::List { dir, json: true });
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[test]
fn held_pool_names_the_holder_pid() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let _held = Pool::create(&dir, &PoolConfig::default()).unwrap();
    let (r, _) = run_v(VolumeCommand::List { dir, json: false });
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
}

#[test]
fn bad_arguments_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let (r, _) = run_p(PoolCommand::Create {
        dir: dir.clone(),
        chunk_size: 3000,
        capacity: 1 << 20,
        low_water: 80,
    });
    assert!(matches!(
        r,
        Err(OfflineError::Pool(e)) if e.kind() == PoolErrorKind::InvalidConfig
    ));
    let (r, _) = run_p(PoolCommand::Info { dir, json: false });
    assert!(matches!(
        r,
        Err(OfflineError::Pool(e)) if e.kind() == PoolErrorKind::NotAPool
    ));
}
