//! A fleet of ringgate nodes on one PostgreSQL behaves like one big node: a request limit
//! admits exactly its value whatever node the load lands on, the shares of a node killed
//! with `kill -9` come back to the survivors, a rolling restart loses no request, no usage and
//! no share, and SQLite refuses to be shared. Each test runs its own fleet on its own schema
//! (tests/common/fleet.rs).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::fleet::*;
use common::*;
use serde_json::json;

/// Waits, when the current hour is about to end, for the next one: the tests count requests
/// of one `rph` window.
fn within_one_hour_window() {
    let into_hour = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 3600
    };
    if into_hour() > 3540 {
        poll_until(Duration::from_secs(70), || (into_hour() < 60).then_some(()))
            .expect("a new hour");
    }
}

/// A number the fleet's schema answers `sql` with.
fn number(fleet: &Fleet, sql: &str) -> u64 {
    fleet.sql(sql).parse().unwrap()
}

/// Units every node holds of every limit, summed (0 once all unused shares came back).
fn held(fleet: &Fleet) -> u64 {
    number(fleet, "SELECT COALESCE(SUM(held), 0) FROM limit_shares")
}

/// Units every node holds of `limit` of key `id`.
fn held_of(fleet: &Fleet, id: &str, limit: &str) -> u64 {
    number(
        fleet,
        &format!(
            "SELECT COALESCE(SUM(held), 0) FROM limit_shares WHERE entity_id = '{id}' \
             AND limit_name = '{limit}'"
        ),
    )
}

/// The counter of `limit` of key `id` in the current window.
fn counter(fleet: &Fleet, id: &str, limit: &str) -> u64 {
    number(
        fleet,
        &format!(
            "SELECT COALESCE(SUM(used), 0) FROM limit_counters WHERE entity_id = '{id}' \
             AND limit_name = '{limit}' AND window_start = (SELECT MAX(window_start) \
             FROM limit_counters WHERE entity_id = '{id}' AND limit_name = '{limit}')"
        ),
    )
}

/// Usage recorded for key `id` over all its periods: `column` is `requests` or `spent_nanos`.
fn recorded(fleet: &Fleet, id: &str, column: &str) -> u64 {
    number(
        fleet,
        &format!(
            "SELECT COALESCE(SUM({column}), 0) FROM usage WHERE entity_kind = 'key' \
             AND entity_id = '{id}'"
        ),
    )
}

/// Requests with `secret` to the given nodes in turn until each refuses in the same round;
/// the number admitted.
fn use_up(nodes: &[&Gateway], secret: &str) -> u64 {
    let mut admitted = 0;
    loop {
        let mut refused = 0;
        for gw in nodes {
            match chat(gw, secret) {
                200 => admitted += 1,
                // A spent rate limit, a spent budget.
                429 | 402 => refused += 1,
                // The node's share did not come in time (the database slow on a loaded
                // machine): not known to be spent, so the next round asks again.
                503 => {}
                other => panic!("unexpected status {other}"),
            }
        }
        if refused == nodes.len() {
            return admitted;
        }
    }
}

#[test]
fn a_request_limit_admits_exactly_its_value_under_uneven_load_on_three_nodes() {
    let fleet = Fleet::start(3, json!({}));
    within_one_hour_window();
    let (id, secret) = create_key(fleet.node(0), r#"{"name":"fleet","limits":{"rph":120}}"#);
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    // 6 clients on node 0, 3 on node 1, 1 on node 2, each until its node refuses.
    let admitted = Arc::new(AtomicU64::new(0));
    thread::scope(|scope| {
        for (node, clients) in [(0, 6), (1, 3), (2, 1)] {
            for _ in 0..clients {
                let (gw, admitted, secret) = (fleet.node(node), &admitted, &secret);
                scope.spawn(move || loop {
                    match chat(gw, secret) {
                        200 => admitted.fetch_add(1, Ordering::Relaxed),
                        429 => return,
                        // The node's share came late (a loaded machine): retry, as told.
                        503 => 0,
                        other => panic!("unexpected status {other}"),
                    };
                });
            }
        }
    });
    // What a node still holds unused comes back once the limit is idle there; then every
    // last unit is reachable from any node.
    poll_until(Duration::from_secs(10), || {
        (held(&fleet) == 0).then_some(())
    })
    .expect("unused shares come back");
    let nodes: Vec<&Gateway> = fleet.live().collect();
    let total = admitted.load(Ordering::Relaxed) + use_up(&nodes, &secret);
    assert_eq!(total, 120, "exactly the limit, over three nodes");
    assert_eq!(counter(&fleet, &id, "rph"), 120);
}

#[test]
fn a_token_limit_holds_over_three_nodes_and_all_of_it_is_reachable() {
    let fleet = Fleet::start(3, json!({}));
    within_one_hour_window();
    let limit = 3_000;
    let (id, secret) = create_key(
        fleet.node(0),
        &format!(r#"{{"name":"tokens","limits":{{"tph":{limit}}}}}"#),
    );
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    // Uneven load until every node refuses, then, once unused shares are back, a sweep.
    let admitted = AtomicU64::new(0);
    thread::scope(|scope| {
        for (node, clients) in [(0, 4), (1, 2), (2, 1)] {
            for _ in 0..clients {
                let (gw, secret, admitted) = (fleet.node(node), &secret, &admitted);
                scope.spawn(move || {
                    while chat(gw, secret) == 200 {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    });
    // Sweeps, each once unused shares are back, until one admits nothing: a node refuses when
    // what it holds is less than a request's reservation, so the last units of a token limit
    // can be spread over nodes, each too few, until they go back.
    let nodes: Vec<&Gateway> = fleet.live().collect();
    let mut requests = admitted.load(Ordering::Relaxed);
    loop {
        poll_until(Duration::from_secs(10), || {
            (held(&fleet) == 0).then_some(())
        })
        .expect("unused shares come back");
        match use_up(&nodes, &secret) {
            0 => break,
            swept => requests += swept,
        }
    }
    poll_until(Duration::from_secs(10), || {
        (recorded(&fleet, &id, "requests") == requests).then_some(())
    })
    .expect("every admitted request's usage is stored");
    let spent = number(
        &fleet,
        &format!(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage \
             WHERE entity_kind = 'key' AND entity_id = '{id}'"
        ),
    );
    // The fleet never granted more than the limit; what it admitted used all of it but less
    // than a request's reservation (its tokens and its 8-token output cap), twice for slack.
    let per_request = spent / requests;
    assert!(counter(&fleet, &id, "tph") <= limit);
    assert!(
        spent > limit - 2 * (per_request + 8) && spent <= limit + per_request,
        "{spent} tokens spent of {limit} ({requests} requests); counter {}",
        counter(&fleet, &id, "tph")
    );
}

#[test]
fn the_shares_of_a_node_killed_with_sigkill_come_back_to_the_survivors() {
    // Shares stay with a node that is idle (no give-back): only its death frees them.
    let mut fleet = Fleet::start(
        3,
        json!({"governance": {"cluster": {"share_idle_ms": 600_000}}}),
    );
    within_one_hour_window();
    let (rate_id, rate) = create_key(fleet.node(0), r#"{"name":"rate","limits":{"rph":100}}"#);
    let (budget_id, budget) = create_key(
        fleet.node(0),
        r#"{"name":"budget","budget":{"limit_nanos":1000000000,"period":"monthly"}}"#,
    );
    fleet.wait_everywhere(&rate, true, Duration::from_secs(5));
    fleet.wait_everywhere(&budget, true, Duration::from_secs(5));
    for _ in 0..10 {
        assert_eq!(chat(fleet.node(2), &rate), 200);
        assert_eq!(chat(fleet.node(2), &budget), 200);
    }
    // Node 2's usage is flushed (its shares settled): it holds only what it did not spend.
    let spent_before = poll_until(Duration::from_secs(10), || {
        let settled = counter(&fleet, &rate_id, "rph") - held_of(&fleet, &rate_id, "rph");
        (settled == 10 && recorded(&fleet, &budget_id, "spent_nanos") > 0)
            .then(|| recorded(&fleet, &budget_id, "spent_nanos"))
    })
    .expect("node 2's usage reaches the store");
    assert!(
        counter(&fleet, &rate_id, "rph") > 10,
        "node 2 holds an unused share"
    );
    fleet.nodes[2].as_mut().unwrap().kill9();
    fleet.nodes[2] = None;
    // The leader reaps it within node_ttl (2 s) and a heartbeat.
    poll_until(Duration::from_secs(10), || {
        (fleet.sql("SELECT COUNT(*) FROM cluster_nodes") == "2").then_some(())
    })
    .expect("the dead node is reaped");
    let survivors: Vec<&Gateway> = fleet.live().collect();
    let admitted = use_up(&survivors, &rate);
    assert_eq!(
        admitted,
        90,
        "everything node 2 did not spend; counter {}, held by node {}",
        counter(&fleet, &rate_id, "rph"),
        fleet.sql(&format!(
            "SELECT string_agg(node_id || ':' || held, ',') FROM limit_shares WHERE entity_id = '{rate_id}'"
        ))
    );
    let admitted = use_up(&survivors, &budget);
    // Once every served request's cost is stored: a budget admits while any of it is left
    // and charges the real cost, so each shard that still held a slice when it ran out may
    // admit one more request (two survivors, two shards each: four) — docs/cluster.md.
    let limit = 1_000_000_000;
    let total = poll_until(Duration::from_secs(10), || {
        (recorded(&fleet, &budget_id, "requests") == 10 + admitted)
            .then(|| recorded(&fleet, &budget_id, "spent_nanos"))
    })
    .expect("the survivors' usage reaches the store");
    let per_request = spent_before / 10;
    assert!(
        (limit - 2 * per_request..=limit + 4 * 2 * per_request).contains(&total),
        "all of the budget the dead node did not spend is reachable, and no more: spent \
         {total} of {limit} ({per_request} a request)"
    );
}

#[test]
fn a_rolling_restart_under_load_loses_no_request_usage_or_share() {
    let mut fleet = Fleet::start(3, json!({"shutdown": {"grace_period_ms": 5000}}));
    within_one_hour_window();
    let (id, secret) = create_key(
        fleet.node(0),
        r#"{"name":"rolling","limits":{"rph":100000}}"#,
    );
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    let addrs: Arc<Mutex<Vec<SocketAddr>>> =
        Arc::new(Mutex::new(fleet.live().map(|g| g.addr).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (addrs, stop, served, secret) =
                (addrs.clone(), stop.clone(), served.clone(), secret.clone());
            thread::spawn(move || {
                let mut turn = c;
                while !stop.load(Ordering::Relaxed) {
                    turn += 1;
                    let addr = {
                        let addrs = addrs.lock().unwrap();
                        addrs[turn % addrs.len()]
                    };
                    // A client that retries elsewhere when a node refuses connections.
                    let Ok(mut conn) = HttpConn::connect(addr, Duration::from_secs(5)) else {
                        continue;
                    };
                    let auth = format!("Bearer {secret}");
                    let body = chat_body("mock/gpt-4o-mini", "hi", false);
                    let req = build_request(
                        "POST",
                        "/v1/chat/completions",
                        &[
                            ("authorization", &auth),
                            ("content-type", "application/json"),
                        ],
                        Some(body.as_bytes()),
                        false,
                    );
                    if conn.send(&req).is_err() {
                        continue;
                    }
                    match conn.read_response() {
                        // A lease answer that came late on a loaded machine: not charged,
                        // and the client is told to retry.
                        Ok(resp) if resp.status == 503 => {}
                        Ok(resp) => {
                            assert_eq!(resp.status, 200, "{}", resp.text());
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        // Accepted just as the node closed its listener: never answered, so
                        // never charged; the client tries again.
                        Err(e) if is_disconnect(&e) => {}
                        Err(e) => panic!("request failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for i in 0..3 {
        let before = served.load(Ordering::Relaxed);
        poll_until(Duration::from_secs(10), || {
            (served.load(Ordering::Relaxed) > before + 20).then_some(())
        })
        .expect("traffic flows");
        let mut old = fleet.nodes[i].take().unwrap();
        old.sigterm();
        assert_eq!(
            old.wait_exit(Duration::from_secs(15)),
            Some(0),
            "{}",
            old.stderr()
        );
        let new = fleet.add_node();
        fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
        addrs.lock().unwrap()[i] = fleet.node(new).addr;
    }
    let before = served.load(Ordering::Relaxed);
    poll_until(Duration::from_secs(10), || {
        (served.load(Ordering::Relaxed) > before + 20).then_some(())
    })
    .expect("traffic flows after the restart");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("no client saw a failed request");
    }
    let served = served.load(Ordering::Relaxed);
    // Every served request is in the stored usage, once; no share is stranded.
    poll_until(Duration::from_secs(10), || {
        (recorded(&fleet, &id, "requests") == served
            && held(&fleet) == 0
            && counter(&fleet, &id, "rph") == served)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "served {served}; stored usage, held shares and the counter: {}, {}, {}",
            fleet.sql(&format!(
                "SELECT SUM(requests) FROM usage WHERE entity_id = '{id}'"
            )),
            held(&fleet),
            counter(&fleet, &id, "rph")
        )
    });
    assert_eq!(fleet.sql("SELECT COUNT(*) FROM cluster_nodes"), "3");
}

#[test]
fn two_nodes_on_one_sqlite_file_are_refused() {
    let mock = MockLlm::start(&[]);
    let dir = TempDir::new("ringgate-sqlite-shared");
    let db = dir.path().join("shared.db").display().to_string();
    let config = json!({
        "governance": {"database": db},
        "providers": {"mock": {"base_url": mock.base_url()}},
    });
    let _first = Gateway::start(config.clone());
    let second = std::process::Command::new(ringgate_bin())
        .args(["serve", "--config"])
        .arg(write_config_file(&dir, "second.yaml", &config))
        .output()
        .expect("run a second node");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("single-node") && stderr.contains("postgres://"),
        "{stderr}"
    );
}

#[test]
fn a_share_granted_after_its_request_timed_out_goes_back() {
    let fleet = Fleet::start(
        1,
        json!({"governance": {"cluster": {"lease_timeout_ms": 300}}}),
    );
    within_one_hour_window();
    let (_, secret) = create_key(fleet.node(0), r#"{"name":"late","limits":{"rph":1000}}"#);
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    poll_until(Duration::from_secs(10), || {
        (held(&fleet) == 0).then_some(())
    })
    .expect("idle shares come back");
    // Commits that write a share take a second (a deferred trigger sleeps in them): the
    // node's next share request is granted after the node stopped waiting for it, as a
    // loaded database's slow commits do.
    fleet.sql(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON limit_shares \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
    );
    assert_eq!(chat(fleet.node(0), &secret), 503, "the share came too late");
    fleet.sql("DROP TRIGGER slow_commit ON limit_shares;");
    // Granted all the same: given back, not held unknown to the node until it leaves.
    poll_until(Duration::from_secs(10), || {
        (held(&fleet) == 0).then_some(())
    })
    .expect("the late grant goes back");
    assert_eq!(
        chat(fleet.node(0), &secret),
        200,
        "and the limit serves again"
    );
}

/// The whole records of a spool file: after its JSON header line, each record is a LEB128
/// length and that many bytes (format 3, `vocab::usage_bytes`).
fn spooled_records(bytes: &[u8]) -> usize {
    let Some(header_end) = bytes.iter().position(|b| *b == b'\n') else {
        return 0;
    };
    vocab::UsageBytes::read(&bytes[header_end + 1..]).0.len()
}

/// Writes `config` (with loopback ports 0) as `name` in `dir`; its path.
fn write_config_file(dir: &TempDir, name: &str, config: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let config = merged(
        json!({"listen": "127.0.0.1:0", "control": {"listen": "127.0.0.1:0"}, "pin_cores": false}),
        config.clone(),
    );
    write_config(&path, &config);
    path
}

#[test]
fn usage_spooled_before_a_kill_9_is_written_once_by_the_restarted_node() {
    let dir = TempDir::new("ringgate-spool-kill");
    // Nothing reaches the store by itself: usage waits in the spool until the node stops.
    let mut fleet = Fleet::start(
        1,
        json!({"governance": {"flush_interval_ms": 600_000, "spool_dir": dir.path().join("spool")}}),
    );
    let (id, secret) = create_key(fleet.node(0), r#"{"name":"spooled","limits":{"rph":1000}}"#);
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    for _ in 0..25 {
        assert_eq!(chat(fleet.node(0), &secret), 200);
    }
    // Every record reached the spool (a header line, then a record a request).
    let open = dir.path().join("spool").join("open.jsonl");
    poll_until(Duration::from_secs(10), || {
        let records = std::fs::read(&open).map_or(0, |bytes| spooled_records(&bytes));
        (records == 25).then_some(())
    })
    .expect("the records reach the spool");
    fleet.nodes[0].as_mut().unwrap().kill9();
    fleet.nodes[0] = None;
    assert_eq!(recorded(&fleet, &id, "requests"), 0, "nothing was flushed");
    // The node comes back on the same spool: it writes what the killed process left, once.
    fleet.add_node();
    poll_until(Duration::from_secs(10), || {
        (recorded(&fleet, &id, "requests") == 25).then_some(())
    })
    .expect("the spooled usage reaches the store");
    assert_eq!(
        number(
            &fleet,
            &format!("SELECT COUNT(*) FROM request_logs WHERE key_id = '{id}'")
        ),
        25
    );
}
