//! Config changes that cannot be missed, on a fleet of three nodes on one PostgreSQL schema:
//! a key created, limited and revoked through node 0 is in force on nodes 1 and 2 within a
//! second — also after node 1's LISTEN connection was killed with `pg_terminate_backend`.

mod common;

use std::time::Duration;

use common::fleet::{admin, chat, create, create_key, key_status, put, Fleet};
use common::{merged, poll_until, Gateway};
use serde_json::json;

/// How soon every node must apply a change made on another.
const IN_FORCE: Duration = Duration::from_secs(1);

/// A fleet of `n` nodes whose node ids (and so their LISTEN connections' names) are known.
fn fleet_of(n: usize) -> (Fleet, Vec<String>) {
    let mut fleet = Fleet::start(0, json!({}));
    let ids: Vec<String> = (0..n).map(|i| format!("{}-n{i}", fleet.schema)).collect();
    for id in &ids {
        let config = merged(
            fleet.config(),
            json!({"governance": {"cluster": {"node_id": id}}}),
        );
        fleet.nodes.push(Some(Gateway::start(config)));
    }
    (fleet, ids)
}

/// Waits until `probe` holds on every one of `nodes`, all within [`IN_FORCE`] of now.
fn in_force_on(fleet: &Fleet, nodes: &[usize], what: &str, probe: impl Fn(&Gateway) -> bool) {
    let pending = std::cell::RefCell::new(nodes.to_vec());
    poll_until(IN_FORCE, || {
        pending.borrow_mut().retain(|&i| !probe(fleet.node(i)));
        pending.borrow().is_empty().then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not in force on nodes {:?} within {IN_FORCE:?}",
            pending.borrow()
        )
    });
}

/// One sample of a metric without labels.
fn metric(gw: &Gateway, name: &str) -> Option<u64> {
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The pids of the LISTEN connections of node `id`.
fn listen_pids(fleet: &Fleet, id: &str) -> Vec<String> {
    let pids = fleet.sql(&format!(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'ringgate-listen {id}'"
    ));
    pids.lines().map(str::to_owned).collect()
}

#[test]
fn changes_on_one_node_are_in_force_on_all_within_a_second() {
    let (fleet, ids) = fleet_of(3);
    let others = [1, 2];

    // Each node's first reload (at start) is done; what follows is the key's doing.
    let reloads: Vec<u64> = others
        .iter()
        .map(|&i| {
            poll_until(IN_FORCE, || {
                metric(fleet.node(i), "ringgate_cluster_config_reloads_total").filter(|&n| n >= 1)
            })
            .expect("the first reload")
        })
        .collect();
    // Created on node 0: accepted everywhere.
    let (id, secret) = create_key(
        fleet.node(0),
        r#"{"name":"roaming","limits":{"rpm":1000000},"active":true}"#,
    );
    in_force_on(&fleet, &others, "a new key", |gw| {
        key_status(gw, &secret) != 401
    });
    // The other nodes applied the key alone, without reading everything again.
    in_force_on(&fleet, &others, "the key applied alone", |gw| {
        metric(gw, "ringgate_cluster_config_changes_applied_total").unwrap_or(0) >= 1
    });
    for (&i, before) in others.iter().zip(reloads) {
        assert_eq!(
            metric(fleet.node(i), "ringgate_cluster_config_reloads_total"),
            Some(before),
            "no full reload on node {i}"
        );
    }
    // Nodes 1 and 2 hold shares of the large limit, which would go on admitting.
    for &i in &others {
        assert_eq!(chat(fleet.node(i), &secret), 200);
    }

    // Lowered on node 0 to one request a minute, which is used up: refused everywhere (429).
    // Then deactivated on node 0: refused everywhere (403 key_not_usable).
    for (what, active, status) in [
        ("a lowered limit", true, 429),
        ("a deactivated key", false, 403),
    ] {
        let body = format!(r#"{{"name":"roaming","limits":{{"rpm":1}},"active":{active}}}"#);
        put_key(fleet.node(0), &id, &body);
        in_force_on(&fleet, &others, what, |gw| chat(gw, &secret) == status);
    }
    // Deleted on node 0: unknown everywhere.
    let (status, v) = admin(fleet.node(0), "DELETE", &format!("/admin/keys/{id}"), None);
    assert!(status < 300, "{status} {v}");
    in_force_on(&fleet, &others, "a deleted key", |gw| {
        key_status(gw, &secret) == 401
    });

    // Node 1's LISTEN connection killed: it reconnects, and reloads what it missed.
    let before = listen_pids(&fleet, &ids[1]);
    assert_eq!(before.len(), 1, "node 1 has one LISTEN connection");
    let killed = fleet.sql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'ringgate-listen {}'",
        ids[1]
    ));
    assert_eq!(killed, "1");
    // Created at once, while node 1 may still be reconnecting.
    let (_, missed) = create_key(fleet.node(0), r#"{"name":"meanwhile","active":true}"#);
    in_force_on(&fleet, &[1], "a key created as the connection died", |gw| {
        key_status(gw, &missed) != 401
    });
    poll_until(Duration::from_secs(5), || {
        let now = listen_pids(&fleet, &ids[1]);
        (now.len() == 1 && now != before).then_some(())
    })
    .expect("node 1 listens again on a new connection");
    poll_until(Duration::from_secs(5), || {
        (metric(fleet.node(1), "ringgate_cluster_listen_connected") == Some(1)).then_some(())
    })
    .expect("node 1 reports its LISTEN connection up");
    // Created after it is back.
    let (_, after) = create_key(fleet.node(0), r#"{"name":"after","active":true}"#);
    in_force_on(&fleet, &[1, 2], "a key created after the reconnect", |gw| {
        key_status(gw, &after) != 401
    });

    // Every node reports the stored config version as the one it runs.
    let stored: u64 = fleet
        .sql("SELECT version FROM config_version WHERE id = 1")
        .parse()
        .unwrap();
    assert!(stored >= 6, "six writes bumped the version to {stored}");
    in_force_on(&fleet, &[0, 1, 2], "the stored config version", |gw| {
        metric(gw, "ringgate_cluster_config_version") == Some(stored)
    });
    for gw in fleet.live() {
        assert!(metric(gw, "ringgate_cluster_config_reloads_total").unwrap_or(0) >= 1);
    }
}

#[test]
fn a_change_without_a_notification_is_found_by_the_version_check() {
    let (fleet, _) = fleet_of(2);
    let (id, secret) = create_key(fleet.node(0), r#"{"name":"quiet","active":true}"#);
    in_force_on(&fleet, &[1], "a new key", |gw| {
        key_status(gw, &secret) != 401
    });
    // Changed behind the nodes' backs: no notification, only the version moves.
    fleet.sql(&format!(
        "UPDATE virtual_keys SET active = false WHERE id = '{id}'; \
         UPDATE config_version SET version = version + 1 WHERE id = 1"
    ));
    // The check runs every second; the reload follows it.
    poll_until(Duration::from_secs(3), || {
        fleet
            .live()
            .all(|gw| chat(gw, &secret) == 403)
            .then_some(())
    })
    .expect("every node reloads when the stored version moves");
}

/// Replaces key `id` through `gw`'s admin API.
fn put_key(gw: &Gateway, id: &str, body: &str) {
    put(gw, &format!("/admin/keys/{id}"), body);
}

#[test]
fn a_team_or_customer_changed_on_one_node_binds_its_keys_on_all_without_a_reload() {
    let (fleet, _) = fleet_of(3);
    let others = [1, 2];
    let customer = create(fleet.node(0), "customers", r#"{"name":"acme"}"#)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team_body = |rpm: u64| {
        format!(r#"{{"name":"search","customer_id":"{customer}","limits":{{"rpm":{rpm}}}}}"#)
    };
    let team = create(fleet.node(0), "teams", &team_body(1_000_000))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, secret) = create_key(
        fleet.node(0),
        &format!(r#"{{"name":"member","team_id":"{team}","active":true}}"#),
    );
    in_force_on(&fleet, &others, "a key of the team", |gw| {
        key_status(gw, &secret) != 401
    });
    for &i in &others {
        assert_eq!(chat(fleet.node(i), &secret), 200);
    }
    let counters = |name: &str| -> Vec<u64> {
        others
            .iter()
            .map(|&i| metric(fleet.node(i), name).unwrap_or(0))
            .collect()
    };
    let reloads = counters("ringgate_cluster_config_reloads_total");
    // The team's limit lowered on node 0 (to one a minute, used up): its key is refused
    // everywhere.
    let path = format!("/admin/teams/{team}");
    put(fleet.node(0), &path, &team_body(1));
    in_force_on(&fleet, &others, "a lowered team limit", |gw| {
        chat(gw, &secret) == 429
    });
    // The customer's budget spent on node 0 (a budget of 0): refused everywhere, for it.
    put(
        fleet.node(0),
        &format!("/admin/customers/{customer}"),
        r#"{"name":"acme","budget":{"limit_nanos":0,"period":"monthly"}}"#,
    );
    put(fleet.node(0), &path, &team_body(1_000_000));
    in_force_on(&fleet, &others, "a customer's spent budget", |gw| {
        chat(gw, &secret) == 402
    });
    assert_eq!(
        counters("ringgate_cluster_config_reloads_total"),
        reloads,
        "no full reload"
    );
}

#[test]
fn a_budget_reset_on_one_node_reopens_the_budget_on_all() {
    let (fleet, _) = fleet_of(3);
    let others = [1, 2];
    // A few requests' worth ($0.01; one costs a few thousandths), spent on node 1.
    let (id, secret) = create_key(
        fleet.node(0),
        r#"{"name":"tight","budget":{"limit_nanos":10000000,"period":"monthly"},"active":true}"#,
    );
    in_force_on(&fleet, &others, "a new key", |gw| {
        key_status(gw, &secret) != 401
    });
    while chat(fleet.node(1), &secret) == 200 {}
    in_force_on(&fleet, &[0, 1, 2], "a spent budget", |gw| {
        chat(gw, &secret) == 402
    });
    let (status, v) = admin(
        fleet.node(0),
        "POST",
        &format!("/admin/budgets/key/{id}/reset"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    // Applied alone on the other nodes: a fresh period, with a fleet counter of its own.
    in_force_on(&fleet, &others, "a reset budget", |gw| {
        chat(gw, &secret) == 200
    });
}
