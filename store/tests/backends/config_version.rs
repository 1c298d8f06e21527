//! Config changes that cannot be missed: the config version every admin write bumps, the
//! notification channel of each schema, and a LISTEN that comes back after its connection
//! was killed.

use std::time::Duration;

use store::{
    ConfigEvent, ConfigKind, ConfigSubscription, CustomerInput, KeyInput, LISTEN_APPLICATION_NAME,
};

use crate::{admin_client, new_customer, new_key, pg_url, unique_suffix, TestDb};

backend_tests!(
    version_rises_with_each_write,
    schemas_do_not_hear_each_other,
    subscription_survives_terminated_connection,
);

/// Waits up to `within` for the next event about `id`, skipping others; its version.
async fn change_of(sub: &mut ConfigSubscription, id: &str, within: Duration) -> Option<u64> {
    change_of_without(sub, id, within, None).await
}

/// [`change_of`], failing if a change of `never` comes first.
async fn change_of_without(
    sub: &mut ConfigSubscription,
    id: &str,
    within: Duration,
    never: Option<&str>,
) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, sub.next_event())
            .await
            .unwrap_or_else(|_| panic!("no config change for {id} within {within:?}"))
            .expect("subscription ended");
        if let ConfigEvent::Changed { change, version } = event {
            assert_ne!(
                Some(change.id.as_str()),
                never,
                "heard the other schema's write"
            );
            if change.id == id {
                return version;
            }
        }
    }
}

async fn version_rises_with_each_write(db: TestDb) {
    let (listener, mut sub) = crate::other_node_subscription(&db).await;
    let s = &db.store;
    let v0 = s.config_version().await.unwrap();
    let second = Duration::from_secs(1);

    let c = new_customer(s, "acme", None).await;
    assert_eq!(s.config_version().await.unwrap(), v0 + 1);
    assert_eq!(change_of(&mut sub, &c.id, second).await, Some(v0 + 1));

    let input = CustomerInput {
        name: "acme 2".into(),
        ..Default::default()
    };
    s.update_customer(&c.id, &input).await.unwrap();
    assert_eq!(change_of(&mut sub, &c.id, second).await, Some(v0 + 2));

    let k = new_key(s, "k", None).await;
    assert_eq!(change_of(&mut sub, &k.id, second).await, Some(v0 + 3));
    s.delete_key(&k.id).await.unwrap();
    assert_eq!(change_of(&mut sub, &k.id, second).await, Some(v0 + 4));

    // Writes outside the CRUD methods (budget resets, providers) bump it too.
    let provider = format!("prov-{}", unique_suffix());
    s.notify_config_changed(ConfigKind::Provider, &provider)
        .await
        .unwrap();
    assert_eq!(change_of(&mut sub, &provider, second).await, Some(v0 + 5));

    // Another node reads the same version.
    assert_eq!(listener.config_version().await.unwrap(), v0 + 5);
    // A write that fails (here: a key of a missing team) changes nothing.
    let orphan = KeyInput {
        name: "orphan".into(),
        team_id: Some("no-such-team".into()),
        ..Default::default()
    };
    assert!(s.create_key(&orphan).await.is_err());
    assert_eq!(s.config_version().await.unwrap(), v0 + 5);
}

async fn schemas_do_not_hear_each_other(db: TestDb) {
    if !db.is_pg() {
        return; // One SQLite file is one node.
    }
    crate::run(TestDb::postgres().await, |other| async move {
        let mut here = db
            .another(None)
            .await
            .subscribe_config_changes()
            .await
            .unwrap();
        let mut there = other
            .another(None)
            .await
            .subscribe_config_changes()
            .await
            .unwrap();
        let second = Duration::from_secs(1);
        let theirs = new_customer(&other.store, "theirs", None).await;
        let ours = new_customer(&db.store, "ours", None).await;
        // Notifications arrive in commit order: had `theirs` reached this schema's listener,
        // it would have come before `ours` (and `ours` before `theirs_2` over there).
        let theirs_2 = new_customer(&other.store, "theirs 2", None).await;
        change_of_without(&mut here, &ours.id, second, Some(&theirs.id)).await;
        change_of_without(&mut there, &theirs_2.id, second, Some(&ours.id)).await;
        // Each schema keeps its own version.
        assert_eq!(db.store.config_version().await.unwrap(), 1);
        assert_eq!(other.store.config_version().await.unwrap(), 2);
    })
    .await;
}

async fn subscription_survives_terminated_connection(db: TestDb) {
    if !db.is_pg() {
        return; // No connection to lose.
    }
    let node = format!("t-{}", unique_suffix());
    let listener = db.another(None).await;
    let mut sub = listener
        .subscribe_config_changes_as(Some(&node))
        .await
        .unwrap();
    assert!(sub.is_connected());
    let admin = admin_client(&pg_url()).await;
    let app_name = format!("{LISTEN_APPLICATION_NAME} {node}");
    let killed = connections(&admin, &app_name, "pg_terminate_backend(pid)").await;
    assert_eq!(killed, 1, "one LISTEN connection named {app_name:?}");

    // It comes back by itself and says so (what happened in between was missed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, sub.next_event())
            .await
            .expect("the subscription reconnects within 5 s")
            .expect("subscription ended");
        if event == ConfigEvent::Resubscribed {
            break;
        }
    }
    assert!(sub.is_connected());
    let c = new_customer(&db.store, "after", None).await;
    assert!(change_of(&mut sub, &c.id, Duration::from_secs(1))
        .await
        .is_some());
    let rows = connections(&admin, &app_name, "pid").await;
    assert_eq!(rows, 1, "one LISTEN connection again");

    // Dropping the subscription closes its connection.
    drop(sub);
    let gone = async {
        loop {
            if connections(&admin, &app_name, "pid").await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the LISTEN connection closes when the subscription drops");
}

/// Runs `SELECT {what}` over the connections named `app_name`; how many there were.
async fn connections(admin: &tokio_postgres::Client, app_name: &str, what: &str) -> usize {
    admin
        .query(
            &format!("SELECT {what} FROM pg_stat_activity WHERE application_name = $1"),
            &[&app_name],
        )
        .await
        .unwrap()
        .len()
}
