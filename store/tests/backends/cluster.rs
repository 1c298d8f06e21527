//! What nodes share through the database: limit leases and config-change notifications.

use std::time::Duration;

use store::{ConfigChange, ConfigKind, CustomerInput};
use vocab::EntityRef;

use crate::{new_customer, new_key, unique_suffix, TestDb};

backend_tests!(
    leases_never_exceed_limit_under_concurrency,
    lease_return_and_edge_cases,
    config_changes_are_notified,
);

async fn leases_never_exceed_limit_under_concurrency(db: TestDb) {
    let node_b = db.another(None).await;
    let e = EntityRef::key("hot-key");
    let window = 1_718_000_040;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            db.store.clone()
        } else {
            node_b.clone()
        };
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = 0;
            loop {
                let g = s.acquire_lease(&e, "rpm", window, 50, 7).await.unwrap();
                assert!(g <= 7);
                total += g;
                if g == 0 {
                    return total;
                }
            }
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    assert_eq!(granted, 50);
    let c = db
        .store
        .lease_counter(&e, "rpm", window)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.used, c.limit_value), (50, 50));
    // Other windows and limits are independent.
    assert_eq!(
        db.store
            .acquire_lease(&e, "rpm", window + 60, 50, 7)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        db.store
            .acquire_lease(&e, "tpm", window, 50, 70)
            .await
            .unwrap(),
        50
    );
}

async fn lease_return_and_edge_cases(db: TestDb) {
    let s = &db.store;
    let e = EntityRef::team("t");
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 0).await.unwrap(), 0);
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 30).await.unwrap(), 30);
    s.return_lease(&e, "rpd", 0, 10).await.unwrap();
    assert_eq!(
        s.lease_counter(&e, "rpd", 0).await.unwrap().unwrap().used,
        20
    );
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 100).await.unwrap(), 30);
    s.return_lease(&e, "rpd", 0, 1_000).await.unwrap();
    assert_eq!(
        s.lease_counter(&e, "rpd", 0).await.unwrap().unwrap().used,
        0
    );
    // Lowering the limit below what is used grants nothing and keeps `used`.
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 50, 20).await.unwrap(), 20);
    assert_eq!(s.acquire_lease(&e, "rpd", 0, 10, 5).await.unwrap(), 0);
    let c = s.lease_counter(&e, "rpd", 0).await.unwrap().unwrap();
    assert_eq!((c.used, c.limit_value), (20, 10));
    // Limit 0 grants nothing; returning to a missing counter is a no-op.
    assert_eq!(s.acquire_lease(&e, "tpd", 0, 0, 5).await.unwrap(), 0);
    s.return_lease(&e, "nope", 0, 5).await.unwrap();
    assert_eq!(s.lease_counter(&e, "nope", 0).await.unwrap(), None);
    assert_eq!(s.purge_limit_counters(1).await.unwrap(), 2);
}

async fn next_change(sub: &mut store::ConfigSubscription, id: &str) -> ConfigChange {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        // Other tests share the PostgreSQL channel: skip their ids.
        let got = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("no config change for {id} within 1 s"))
            .expect("subscription ended");
        if got.id == id {
            return got;
        }
    }
}

async fn config_changes_are_notified(db: TestDb) {
    // PostgreSQL: another node's writes arrive. SQLite: this process's.
    let listener = if db.is_pg() {
        db.another(None).await
    } else {
        db.store.clone()
    };
    let mut sub = listener.subscribe_config_changes().await.unwrap();
    let s = &db.store;
    let c = new_customer(s, "acme", None).await;
    assert_eq!(
        next_change(&mut sub, &c.id).await,
        ConfigChange {
            kind: ConfigKind::Customer,
            id: c.id.clone()
        }
    );
    s.update_customer(
        &c.id,
        &CustomerInput {
            name: "acme 2".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    next_change(&mut sub, &c.id).await;
    s.delete_customer(&c.id).await.unwrap();
    next_change(&mut sub, &c.id).await;

    let provider = format!("prov-{}", unique_suffix());
    s.notify_config_changed(ConfigKind::Provider, &provider)
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut sub, &provider).await.kind,
        ConfigKind::Provider
    );
    let k = new_key(s, "k", None).await;
    assert_eq!(next_change(&mut sub, &k.id).await.kind, ConfigKind::Key);
}
