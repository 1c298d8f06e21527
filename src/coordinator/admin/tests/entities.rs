//! Customers, teams and keys: the ownership chain, updates and deletes with conflicts, and
//! bodies refused with the field named.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::{assert_error, harness, id_of, TOKEN};

#[tokio::test]
async fn customer_team_key_chain_and_the_secret_shown_once() {
    let h = harness().await;
    let (s, customer) = h
        .post(
            "/admin/customers",
            json!({"name": "Acme", "budget": {"limit_nanos": 100_000_000_000u64, "period": "monthly"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{customer}");
    assert!(h.was_notified().await);
    assert_eq!(customer["name"], "Acme");
    assert_eq!(customer["budget"]["period"], "monthly");
    assert_eq!(customer["limits"]["rpm"], Value::Null);
    let customer_id = id_of(&customer);

    let (s, team) = h
        .post(
            "/admin/teams",
            json!({"name": "Search", "customer_id": customer_id, "limits": {"tpm": 100000}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    assert_eq!(team["customer_id"], customer_id.as_str());
    assert_eq!(team["limits"]["tpm"], 100000);
    let team_id = id_of(&team);

    let (s, created) = h
        .post(
            "/admin/keys",
            json!({
                "name": "search-prod",
                "team_id": team_id,
                "allowed_models": ["openai/gpt-4o-mini"],
                "budget": {"limit_nanos": 5_000_000_000u64, "period": "daily"},
                "limits": {"rpm": 60}
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert!(h.was_notified().await);
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("rg-"), "{secret}");
    let key = &created["key"];
    let key_id = id_of(key);
    assert_eq!(key["key_prefix"], &secret[..8]);
    assert_eq!(key["team_id"], team_id.as_str());
    assert_eq!(key["active"], true);
    assert_eq!(key["limits"]["rpm"], 60);
    assert_eq!(key["budget"]["limit_nanos"], 5_000_000_000u64);
    assert!(key.get("key_hash").is_none(), "{key}");
    let hash = store::keys::hash_key(&secret);
    assert!(!created.to_string().contains(&hash));

    // The store really holds the key: the secret authenticates.
    let stored = h
        .state
        .store
        .find_key_by_hash(&hash)
        .await
        .unwrap()
        .expect("key stored");
    assert_eq!(stored.id, key_id);

    // Listing and getting show the prefix, never the secret or the hash.
    for path in ["/admin/keys".to_owned(), format!("/admin/keys/{key_id}")] {
        let (s, body) = h.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let text = body.to_string();
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains(&hash), "{text}");
        assert!(!text.contains("key_hash"), "{text}");
        assert!(text.contains(&secret[..8]), "{text}");
    }
    let (_, list) = h.get("/admin/keys").await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!h.was_notified().await, "reads must not notify");

    let (s, teams) = h.get("/admin/teams/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(teams["data"][0]["id"], team_id.as_str());
    let (s, got) = h.get(&format!("/admin/customers/{customer_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, customer);
}

#[tokio::test]
async fn update_and_delete_with_conflicts() {
    let h = harness().await;
    let (_, customer) = h.post("/admin/customers", json!({"name": "A"})).await;
    let cid = id_of(&customer);
    let (_, team) = h
        .post("/admin/teams", json!({"name": "T", "customer_id": cid}))
        .await;
    let tid = id_of(&team);
    let (_, created) = h
        .post("/admin/keys", json!({"name": "k", "team_id": tid}))
        .await;
    let kid = id_of(&created["key"]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(h.was_notified().await);

    // PUT replaces the editable fields.
    let (s, updated) = h
        .put(
            &format!("/admin/customers/{cid}"),
            json!({"name": "A2", "limits": {"rpd": 1000}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "A2");
    assert_eq!(updated["limits"]["rpd"], 1000);
    assert_eq!(updated["created_at"], customer["created_at"]);
    assert!(h.was_notified().await);

    let (s, key) = h
        .put(
            &format!("/admin/keys/{kid}"),
            json!({"name": "k2", "team_id": tid, "active": false, "expires_at": 4_000_000_000i64}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{key}");
    assert_eq!(key["name"], "k2");
    assert_eq!(key["active"], false);
    assert_eq!(key["expires_at"], 4_000_000_000i64);
    assert_eq!(key["key_prefix"], &secret[..8]);
    assert!(key.get("key_hash").is_none());
    assert!(key.get("secret").is_none());

    // Deleting a parent that is still referenced: 409, nothing notified.
    let _ = h.was_notified().await;
    let reply = h.delete(&format!("/admin/teams/{tid}")).await;
    assert_error(&reply, StatusCode::CONFLICT, "conflict_error", "in_use");
    let reply = h.delete(&format!("/admin/customers/{cid}")).await;
    assert_error(&reply, StatusCode::CONFLICT, "conflict_error", "in_use");
    assert!(!h.was_notified().await);

    // Children first, then parents.
    for (path, object) in [
        (format!("/admin/keys/{kid}"), "key"),
        (format!("/admin/teams/{tid}"), "team"),
        (format!("/admin/customers/{cid}"), "customer"),
    ] {
        let (s, body) = h.delete(&path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["deleted"], true);
        assert_eq!(body["object"], object);
        assert!(h.was_notified().await);
        let reply = h.get(&path).await;
        assert_error(
            &reply,
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
        );
        let reply = h.delete(&path).await;
        assert_error(
            &reply,
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
        );
    }
    assert!(!h.was_notified().await);
}

#[tokio::test]
async fn a_keys_cache_ttl_is_set_read_and_updated() {
    let h = harness().await;
    // Not given: null (the configuration decides).
    let (s, created) = h.post("/admin/keys", json!({"name": "plain"})).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["key"]["cache_ttl_secs"], Value::Null);
    assert!(created["key"].get("cache_ttl_secs").is_some(), "{created}");

    let (s, created) = h
        .post(
            "/admin/keys",
            json!({"name": "cached", "cache_ttl_secs": 300}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let kid = id_of(&created["key"]);
    assert_eq!(created["key"]["cache_ttl_secs"], 300);
    let (_, key) = h.get(&format!("/admin/keys/{kid}")).await;
    assert_eq!(key["cache_ttl_secs"], 300);
    let stored = h.state.store.get_key(&kid).await.unwrap().unwrap();
    assert_eq!(stored.cache_ttl_secs, Some(300));

    // 0: never cache this key's answers; the largest TTL is a year; null or omitted clears.
    for (ttl, want) in [
        (json!(0), json!(0)),
        (json!(31_536_000), json!(31_536_000)),
        (Value::Null, Value::Null),
    ] {
        let (s, key) = h
            .put(
                &format!("/admin/keys/{kid}"),
                json!({"name": "cached", "cache_ttl_secs": ttl}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{key}");
        assert_eq!(key["cache_ttl_secs"], want, "{ttl}");
        let (_, listed) = h.get("/admin/keys").await;
        let listed = listed["data"].as_array().unwrap().clone();
        let mine = listed.iter().find(|k| k["id"] == kid.as_str()).unwrap();
        assert_eq!(mine["cache_ttl_secs"], want, "{ttl}");
    }
    let (_, key) = h
        .put(&format!("/admin/keys/{kid}"), json!({"name": "cached"}))
        .await;
    assert_eq!(key["cache_ttl_secs"], Value::Null);

    // Out of range or not an integer: 400 naming the field, and nothing changes.
    let _ = h.was_notified().await;
    for bad in [json!(-1), json!(31_536_001), json!(i64::MIN)] {
        for (method, path) in [
            (Method::POST, "/admin/keys".to_owned()),
            (Method::PUT, format!("/admin/keys/{kid}")),
        ] {
            let body = json!({"name": "bad", "cache_ttl_secs": bad});
            let reply = h.call(method, &path, Some(body)).await;
            assert_error(
                &reply,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_value",
            );
            assert_eq!(reply.1["error"]["param"], "cache_ttl_secs", "{}", reply.1);
            let message = reply.1["error"]["message"].as_str().unwrap();
            assert!(message.contains(&bad.to_string()), "{message}");
        }
    }
    for bad in [json!(1.5), json!("300"), json!(true)] {
        let reply = h
            .post("/admin/keys", json!({"name": "bad", "cache_ttl_secs": bad}))
            .await;
        assert_eq!(reply.0, StatusCode::BAD_REQUEST, "{}", reply.1);
        assert_eq!(reply.1["error"]["param"], "cache_ttl_secs", "{}", reply.1);
    }
    assert!(!h.was_notified().await, "refused writes must not notify");
    assert_eq!(h.state.store.list_keys().await.unwrap().len(), 2);
    let stored = h.state.store.get_key(&kid).await.unwrap().unwrap();
    assert_eq!(stored.cache_ttl_secs, None);
    assert_eq!(stored.name, "cached");
}

#[tokio::test]
async fn bad_bodies_are_400_and_name_the_field() {
    let h = harness().await;
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // (path, body, text the message must contain, param)
        (
            "/admin/customers",
            r#"{"name":"a","colour":"red"}"#,
            "unknown field `colour`",
            Some("colour"),
        ),
        (
            "/admin/customers",
            r#"{"name":"a","limits":{"rpm":1,"qps":2}}"#,
            "unknown field `qps`",
            Some("limits.qps"),
        ),
        (
            "/admin/keys",
            r#"{"name":"a","budget":{"limit_nanos":1,"period":"hourly"}}"#,
            "unknown variant `hourly`",
            Some("budget.period"),
        ),
        (
            "/admin/keys",
            r#"{"name":"a","limits":{"rpm":"sixty"}}"#,
            "invalid type",
            Some("limits.rpm"),
        ),
        (
            "/admin/keys",
            r#"{"name":"a","budget":{"period":"daily"}}"#,
            "missing field `limit_nanos`",
            Some("budget"),
        ),
        (
            "/admin/teams",
            r#"{"customer_id":null}"#,
            "missing field `name`",
            None,
        ),
        ("/admin/teams", r#"{"name":"a""#, "EOF", None),
        ("/admin/teams", r#"{"name":"a"} {}"#, "trailing", None),
        ("/admin/teams", "", "JSON object", None),
        ("/admin/teams", "[1]", "JSON object", None),
        ("/admin/teams", "\"x\"", "JSON object", None),
        (
            "/admin/teams",
            r#"{"name":"  "}"#,
            "name must not be empty",
            Some("name"),
        ),
        (
            "/admin/keys",
            r#"{"name":"a","allowed_models":[""]}"#,
            "allowed_models",
            Some("allowed_models"),
        ),
        (
            "/admin/keys",
            r#"{"name":"a","budget":{"limit_nanos":18446744073709551615,"period":"daily"}}"#,
            "too large",
            Some("budget.limit_nanos"),
        ),
        (
            "/admin/providers",
            r#"{"name":"a/b","kind":"openai","base_url":"https://x"}"#,
            "provider name",
            Some("name"),
        ),
        (
            "/admin/providers",
            r#"{"name":"p","kind":"openai","base_url":"ftp://x"}"#,
            "base_url",
            Some("base_url"),
        ),
        (
            "/admin/providers",
            r#"{"name":"p","kind":"openai","base_url":"https://x","config_json":"{nope"}"#,
            "not valid JSON",
            Some("config_json"),
        ),
        (
            "/admin/providers",
            r#"{"name":"p","kind":"openai","base_url":"https://x","secret":""}"#,
            "secret must not be empty",
            Some("secret"),
        ),
    ];
    let auth = format!("Bearer {TOKEN}");
    for &(path, body, needle, param) in cases {
        let reply = h.call_raw(Method::POST, path, Some(&auth), body).await;
        assert_eq!(reply.0, StatusCode::BAD_REQUEST, "{body}: {}", reply.1);
        let err = &reply.1["error"];
        assert_eq!(err["type"], "invalid_request_error", "{}", reply.1);
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
        match param {
            Some(p) => assert_eq!(err["param"], p, "{body}: {}", reply.1),
            None => assert_eq!(err["param"], Value::Null, "{body}: {}", reply.1),
        }
    }
    // References to missing parents: the error names the field that refers.
    for (path, body, field) in [
        (
            "/admin/teams",
            json!({"name": "t", "customer_id": "missing"}),
            "customer_id",
        ),
        (
            "/admin/keys",
            json!({"name": "k", "team_id": "missing"}),
            "team_id",
        ),
    ] {
        let reply = h.post(path, body).await;
        assert_error(
            &reply,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_reference",
        );
        assert_eq!(reply.1["error"]["param"], field, "{path}");
    }
    // A reset accepts only an empty body or `{}`.
    let reply = h
        .post("/admin/budgets/key/x/reset", json!({"force": true}))
        .await;
    assert_eq!(reply.0, StatusCode::BAD_REQUEST, "{}", reply.1);

    assert!(!h.was_notified().await, "failed writes must not notify");
    assert!(h.state.store.list_keys().await.unwrap().is_empty());
    assert!(h.state.store.list_teams().await.unwrap().is_empty());
    assert!(h.state.store.list_providers().await.unwrap().is_empty());
}
