//! What nodes share through the database: limit leases and config-change notifications.

use std::time::Duration;

use store::cluster::NodeRecord;
use store::leases::{ShareAsk, ShareSettle, UsageBatch};
use store::{ConfigChange, ConfigKind, CustomerInput};
use vocab::EntityRef;

use crate::{new_customer, new_key, unique_suffix, TestDb};

backend_tests!(
    shares_never_exceed_limit_under_concurrency,
    shares_come_back_settle_and_follow_the_newest_limit,
    config_changes_are_notified,
);

/// A share request of `want` units (at least `need`) of `rpm` in `window`.
fn ask<'a>(
    node: &'a str,
    e: &'a EntityRef,
    name: &'a str,
    limit: u64,
    need: u64,
    want: u64,
) -> ShareAsk<'a> {
    ShareAsk {
        node_id: node,
        entity: e,
        limit_name: name,
        window_start: 1_718_000_040,
        limit_value: limit,
        config_version: 0,
        need,
        want,
        spread: 1,
    }
}

const WINDOW: i64 = 1_718_000_040;

/// A usage batch that only settles `spent` of `node`'s shares.
fn settling<'a>(id: &'a str, node: &'a str, spent: &'a [ShareSettle]) -> UsageBatch<'a> {
    UsageBatch {
        id,
        node_id: Some(node),
        deltas: &[],
        settles: spent,
        logs: &[],
        yielding: false,
    }
}

async fn shares_never_exceed_limit_under_concurrency(db: TestDb) {
    let e = EntityRef::key("hot-key");
    let totals = crate::on_two_nodes(&db, |s, i| {
        let e = e.clone();
        async move {
            let node = format!("n{}", i % 2);
            let mut total = 0;
            loop {
                let g = s
                    .acquire_share(&ask(&node, &e, "rpm", 50, 1, 7))
                    .await
                    .unwrap();
                assert!(g <= 7);
                total += g;
                if g == 0 {
                    return total;
                }
            }
        }
    })
    .await;
    let granted: u64 = totals.iter().sum();
    assert_eq!(granted, 50);
    let c = db
        .store
        .lease_counter(&e, "rpm", WINDOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.used, c.limit_value), (50, 50));
    let held_a = db.store.share_held("n0", &e, "rpm", WINDOW).await.unwrap();
    let held_b = db.store.share_held("n1", &e, "rpm", WINDOW).await.unwrap();
    assert_eq!(
        held_a + held_b,
        50,
        "every unit is held by the node it was granted to"
    );
    // Other limits are independent.
    assert_eq!(
        db.store
            .acquire_share(&ask("n0", &e, "tpm", 50, 0, 70))
            .await
            .unwrap(),
        50
    );
}

async fn shares_come_back_settle_and_follow_the_newest_limit(db: TestDb) {
    let s = &db.store;
    let e = EntityRef::team("t");
    let used = |name: &'static str| {
        let (s, e) = (s.clone(), e.clone());
        async move {
            s.lease_counter(&e, name, WINDOW)
                .await
                .unwrap()
                .unwrap()
                .used
        }
    };
    assert_eq!(
        s.acquire_share(&ask("a", &e, "rpd", 50, 0, 0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.acquire_share(&ask("a", &e, "rpd", 50, 0, 30))
            .await
            .unwrap(),
        30
    );
    // Given back: the counter and the node's share both drop; never more than it holds.
    s.return_share("a", &e, "rpd", WINDOW, 10).await.unwrap();
    assert_eq!(
        (
            used("rpd").await,
            s.share_held("a", &e, "rpd", WINDOW).await.unwrap()
        ),
        (20, 20)
    );
    s.return_share("b", &e, "rpd", WINDOW, 10).await.unwrap();
    assert_eq!(used("rpd").await, 20, "node b holds nothing to give back");
    // Spent (settled by flushed usage): the share drops, the counter keeps it.
    let spent = [ShareSettle {
        entity: e.clone(),
        limit_name: "rpd".into(),
        window_start: WINDOW,
        units: 5,
    }];
    assert!(s.write_batch(&settling("b1", "a", &spent)).await.unwrap());
    // The same batch again (a replay after a crash) counts once.
    assert!(!s.write_batch(&settling("b1", "a", &spent)).await.unwrap());
    // Batch ids are forgotten once no spool can replay them.
    assert_eq!(s.purge_usage_batches(0).await.unwrap(), 0);
    assert_eq!(s.purge_usage_batches(i64::MAX).await.unwrap(), 1);
    assert_eq!(
        (
            used("rpd").await,
            s.share_held("a", &e, "rpd", WINDOW).await.unwrap()
        ),
        (20, 15)
    );
    s.return_share("a", &e, "rpd", WINDOW, 1_000).await.unwrap();
    assert_eq!(used("rpd").await, 5, "what was spent stays counted");
    // Shares shrink near the end: at least `need`, else a fraction of what is left.
    let mut shrinking = ask("a", &e, "rpd", 50, 1, 40);
    shrinking.spread = 3;
    assert_eq!(
        s.acquire_share(&shrinking).await.unwrap(),
        15,
        "45 left, a third of it"
    );
    shrinking.need = 20;
    assert_eq!(
        s.acquire_share(&shrinking).await.unwrap(),
        20,
        "what is needed, when it is there"
    );
    // A newer config lowers the limit; a node still on the old one cannot raise it back.
    let mut lowered = ask("b", &e, "rpd", 30, 1, 5);
    lowered.config_version = 2;
    assert_eq!(s.acquire_share(&lowered).await.unwrap(), 0, "40 used of 30");
    let mut stale = ask("a", &e, "rpd", 50, 1, 5);
    stale.config_version = 1;
    assert_eq!(s.acquire_share(&stale).await.unwrap(), 0);
    let c = s.lease_counter(&e, "rpd", WINDOW).await.unwrap().unwrap();
    assert_eq!((c.used, c.limit_value), (40, 30));
    // A budget's counter starts from what was spent before; an existing one is left alone.
    s.seed_counter(&e, "budget", WINDOW, 100, 60).await.unwrap();
    s.seed_counter(&e, "budget", WINDOW, 100, 0).await.unwrap();
    assert_eq!(
        s.acquire_share(&ask("a", &e, "budget", 100, 0, 70))
            .await
            .unwrap(),
        40
    );
    // Limit 0 grants nothing; old windows are purged with their shares.
    assert_eq!(
        s.acquire_share(&ask("a", &e, "tpd", 0, 1, 5))
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.purge_limit_counters(WINDOW + 1, 0).await.unwrap(), 2);
    assert_eq!(s.share_held("a", &e, "rpd", WINDOW).await.unwrap(), 0);
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
    let (_listener, mut sub) = crate::other_node_subscription(&db).await;
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

/// Membership is PostgreSQL's alone (SQLite is single-node): nodes beat, a late node is
/// reaped and its unspent shares go back, a reaped node learns it, and one node leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_shares_come_back_and_leadership_moves() {
    crate::run(crate::TestDb::postgres().await, |db| async move {
        let s = &db.store;
        let node = |id: &str, ttl_ms: u64| NodeRecord {
            node_id: id.into(),
            address: "127.0.0.1:1".into(),
            region: "test".into(),
            version: "0".into(),
            shards: 2,
            started_at: 1,
            ttl_ms,
            draining: false,
            leader: false,
        };
        assert!(s.heartbeat(&node("live", 60_000), false).await.unwrap());
        assert!(s.heartbeat(&node("doomed", 1), false).await.unwrap());
        let e = EntityRef::key("k");
        assert_eq!(
            s.acquire_share(&ask("live", &e, "rpm", 100, 0, 30))
                .await
                .unwrap(),
            30
        );
        assert_eq!(
            s.acquire_share(&ask("doomed", &e, "rpm", 100, 0, 30))
                .await
                .unwrap(),
            30
        );
        let spent = ShareSettle {
            entity: e.clone(),
            limit_name: "rpm".into(),
            window_start: WINDOW,
            units: 10,
        };
        assert!(s
            .write_batch(&settling("b2", "doomed", &[spent]))
            .await
            .unwrap());
        // "doomed" misses its 1 ms ttl: the next reap returns the 20 it did not spend.
        let reaped =
            poll(|| async { Some(s.reap_dead_nodes().await.unwrap()).filter(|r| !r.is_empty()) })
                .await;
        assert_eq!(reaped, vec!["doomed".to_owned()]);
        let c = s.lease_counter(&e, "rpm", WINDOW).await.unwrap().unwrap();
        assert_eq!(
            c.used, 40,
            "30 held by the live node + 10 spent by the dead one"
        );
        let nodes = s.list_nodes().await.unwrap();
        assert_eq!(
            nodes
                .iter()
                .map(|n| n.node.node_id.as_str())
                .collect::<Vec<_>>(),
            ["live"]
        );
        assert!(nodes[0].alive);
        // The reaped node beats again and is told it was taken for dead.
        assert!(!s.heartbeat(&node("doomed", 60_000), true).await.unwrap());
        // A clean leave: what the node holds counts as spent.
        s.leave_fleet("live").await.unwrap();
        assert_eq!(s.shares_held("live").await.unwrap(), 0);
        // One leader at a time; the lock moves when the leader's connection goes.
        let mut first = s.leadership().await.unwrap();
        let mut second = s.leadership().await.unwrap();
        assert!(first.try_lead().await.unwrap());
        assert!(!second.try_lead().await.unwrap());
        drop(first);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !second.try_lead().await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lock did not move"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Polls `probe` every 10 ms for up to 5 s.
async fn poll<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
