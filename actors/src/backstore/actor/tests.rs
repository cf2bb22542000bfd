//! Crash isolation: a panic in a backstore actor's handler fails that one
//! request; the actor is restarted with its state and keeps answering.

use std::sync::Arc;

use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

use super::{Crash, Usage};
use crate::backstore::{Backstores, DevConfig, DevOptions, OpenRequest, PoolRegistry, PoolSpec};

#[actix::test]
async fn a_panicking_handler_fails_its_request_and_the_actor_restarts_with_its_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        chunk_size: 64 << 10,
        capacity_bytes: 16 << 20,
        low_water_pct: 90,
    };
    let p = Pool::create(&tmp.path().join("pool"), &cfg).unwrap();
    p.create_volume("vol", 1 << 20, 512).unwrap();
    p.close().unwrap();
    let registry = Arc::new(PoolRegistry::new(vec![PoolSpec {
        name: "p".into(),
        path: tmp.path().join("pool"),
        config: cfg,
        auto_create: false,
        options: PoolOptions::default(),
    }]));
    let key = DevConfig::Thin {
        pool: "p".into(),
        volume: "vol".into(),
    };
    let dir = Backstores::new();
    let a = dir
        .open(OpenRequest {
            config: key.clone(),
            options: DevOptions::default(),
            size_bytes: 1 << 20,
            block_size: 512,
            registry,
            may_create: false,
            file_roots: Vec::new(),
            minor: Some(9),
        })
        .await
        .unwrap();
    let actor = a.actor().clone();
    assert!(
        actor.send(Crash).await.is_err(),
        "the panicked request fails"
    );
    // Same actor, same devices, still in the directory.
    let u = actor.send(Usage).await.unwrap().unwrap();
    assert_eq!(u.users, vec![9]);
    assert_eq!(dir.get(&key), Some(actor));
    // The device's handle was never touched.
    let mut buf = [0u8; 512];
    a.handle().backend().read(0, &mut buf).unwrap();
}
