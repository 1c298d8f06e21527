//! A fleet through a PostgreSQL outage: a throwaway server of the test's own
//! (scripts/ensure-postgres.sh --own) is stopped for 20 s under load on two nodes and started
//! again. Known keys are served on the shares the nodes hold, `/ready` and the metrics say
//! the store is gone, an admin write is refused with 503, usage waits in the nodes' spools —
//! and afterwards the stored usage and request logs equal what the clients were served,
//! exactly, and keys made after the outage reach every node.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use serde_json::json;

const OUTAGE: Duration = Duration::from_secs(20);

/// Stops the test's server when the test ends, however it ends.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        // Already stopped when the test passed; a second stop only fails.
        let _ = std::panic::catch_unwind(|| own_postgres(self.0, &["--stop"]));
    }
}

fn ready_body(gw: &Gateway) -> String {
    gw.get("/ready").text()
}

#[test]
fn a_twenty_second_database_outage_loses_nothing_and_counts_nothing_twice() {
    let dir = TempDir::new("ringgate-outage-pg");
    let pg_dir = dir.path().join("pg");
    let url = own_postgres(&pg_dir, &["--own"]);
    let _stop = StopOnDrop(&pg_dir);
    let fleet = Fleet::start_on(url.clone(), 2, json!({}));
    let (id, secret) = create_key(
        fleet.node(0),
        r#"{"name":"outage","limits":{"rph":1000000}}"#,
    );
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    // A key whose one request an hour is used up before the outage.
    let (_, small) = create_key(fleet.node(0), r#"{"name":"small","limits":{"rph":1}}"#);
    fleet.wait_everywhere(&small, true, Duration::from_secs(5));
    assert_eq!(chat(fleet.node(0), &small), 200);

    // One paced client per node; every answer must be a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = fleet
        .live()
        .map(|gw| {
            let (addr, stop, served, secret) =
                (gw.addr, stop.clone(), served.clone(), secret.clone());
            thread::spawn(move || {
                let auth = format!("Bearer {secret}");
                let body = chat_body("mock/gpt-4o-mini", "hi", false);
                while !stop.load(Ordering::Relaxed) {
                    let req = chat_request(&body, &[("authorization", &auth)], true);
                    let (status, _, body) =
                        http_request(addr, &req, Duration::from_secs(10)).expect("answered");
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    served.fetch_add(1, Ordering::Relaxed);
                    // Paced: the shares the nodes hold last through the outage.
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let until = |what: &str, timeout: Duration, probe: &dyn Fn() -> bool| {
        poll_until(timeout, || probe().then_some(()))
            .unwrap_or_else(|| panic!("{what} within {timeout:?}"));
    };
    until("traffic", Duration::from_secs(10), &|| {
        served.load(Ordering::Relaxed) > 50
    });

    own_postgres(&pg_dir, &["--stop"]);
    let down_at = Instant::now();
    for gw in fleet.live() {
        until(
            "/ready says the store is gone",
            Duration::from_secs(10),
            &|| ready_body(gw).contains(r#""store":"unavailable""#),
        );
    }
    let (status, v) = admin(
        fleet.node(1),
        "POST",
        "/admin/keys",
        Some(r#"{"name":"during"}"#),
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
    // A limit that runs out now cannot be checked: refused, as unavailable, not as spent.
    for gw in fleet.live() {
        let auth = format!("Bearer {small}");
        let body = chat_body("mock/gpt-4o-mini", "hi", false);
        let resp = gw.post_json("/v1/chat/completions", &body, &[("authorization", &auth)]);
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert_eq!(resp.json()["error"]["code"], "limits_unavailable");
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
    until("usage waits in the spool", Duration::from_secs(10), &|| {
        fleet
            .live()
            .all(|gw| gw.metric_sum("ringgate_usage_spool_backlog_batches") > 0)
    });
    let during = served.load(Ordering::Relaxed);
    // The outage lasts its time (the scenario, not a wait for a condition).
    thread::sleep(OUTAGE.saturating_sub(down_at.elapsed()));
    assert!(
        served.load(Ordering::Relaxed) > during,
        "served through the outage"
    );

    assert_eq!(
        own_postgres(&pg_dir, &["--own"]),
        url,
        "back on the same address"
    );
    for gw in fleet.live() {
        until(
            "/ready says the store is back",
            Duration::from_secs(15),
            &|| !ready_body(gw).contains("unavailable"),
        );
    }
    // A key made after the outage reaches every node (the LISTEN came back).
    let (_, after) = create_key(fleet.node(1), r#"{"name":"after"}"#);
    fleet.wait_everywhere(&after, true, Duration::from_secs(5));

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("no client saw a failed request");
    }
    let served = served.load(Ordering::Relaxed);
    let stored = |sql: &str| -> u64 { fleet.sql(sql).parse().unwrap() };
    until(
        "every served request stored once",
        Duration::from_secs(15),
        &|| {
            stored(&format!(
            "SELECT COALESCE(SUM(requests), 0) FROM usage WHERE entity_kind = 'key' AND entity_id = '{id}'"
        )) == served
            && stored(&format!("SELECT COUNT(*) FROM request_logs WHERE key_id = '{id}'")) == served
        },
    );
    assert_eq!(
        stored(&format!(
            "SELECT COALESCE(SUM(requests), 0) FROM usage WHERE entity_kind = 'key' AND entity_id = '{id}'"
        )),
        served,
        "nothing counted twice"
    );
}
