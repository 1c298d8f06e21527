//! Tests of the admin API over a real SQLite store in a temporary directory, driven through
//! [`route`] (the whole API after the body has been read).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use store::{RequestLog, SecretBox, Store, UsageDelta};
use vocab::{EntityRef, NanoUsd};

use super::{allowed_methods, constant_time_eq, route, AdminState};

const TOKEN: &str = "test-admin-token";

/// An admin state over a fresh SQLite store; the directory is removed on drop.
struct Harness {
    state: AdminState,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness() -> Harness {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "ringgate-admin-test-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let store = Store::open_sqlite(dir.join("admin.db"), Some(SecretBox::new(&[7; 32])))
        .await
        .expect("open store");
    Harness {
        state: AdminState {
            store,
            admin_token: TOKEN.to_owned(),
            changed: Arc::new(tokio::sync::Notify::new()),
        },
        dir,
    }
}

impl Harness {
    async fn call_raw(
        &self,
        method: Method,
        path_and_query: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        route(
            &method,
            path,
            query,
            auth.map(str::as_bytes),
            Bytes::from(body.to_owned()),
            &self.state,
        )
        .await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let auth = format!("Bearer {TOKEN}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.call_raw(method, path, Some(&auth), &body).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Whether `changed` was notified since the last check (consumes the permit).
    async fn was_notified(&self) -> bool {
        tokio::time::timeout(Duration::from_millis(20), self.state.changed.notified())
            .await
            .is_ok()
    }
}

fn assert_error(reply: &(StatusCode, Value), status: StatusCode, kind: &str, code: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    let err = &reply.1["error"];
    assert_eq!(err["type"], kind, "{}", reply.1);
    assert_eq!(err["code"], code, "{}", reply.1);
    assert!(err["message"].is_string(), "{}", reply.1);
    assert!(err.get("param").is_some(), "{}", reply.1);
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn every_endpoint_requires_the_admin_token() {
    let h = harness().await;
    let body = json!({"name": "acme"}).to_string();
    for auth in [
        None,
        Some("Bearer wrong-token-of-any-len"),
        Some("Bearer test-admin-toke"),
        Some("Basic dGVzdC1hZG1pbi10b2tlbg=="),
        Some("Bearer "),
        Some(TOKEN),
    ] {
        for (method, path) in [
            (Method::GET, "/admin/customers"),
            (Method::POST, "/admin/customers"),
            (Method::DELETE, "/admin/keys/x"),
            (Method::GET, "/admin/usage/key/x"),
            (Method::GET, "/admin/no-such-thing"),
        ] {
            let reply = h.call_raw(method, path, auth, &body).await;
            assert_error(
                &reply,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_admin_token",
            );
        }
    }
    assert!(!h.was_notified().await);
    assert!(h.state.store.list_customers().await.unwrap().is_empty());
    // The scheme is case-insensitive; surrounding blanks are ignored.
    let reply = h
        .call_raw(
            Method::GET,
            "/admin/customers",
            Some(&format!("bearer  {TOKEN} ")),
            "",
        )
        .await;
    assert_eq!(reply.0, StatusCode::OK);
}

#[tokio::test]
async fn an_empty_admin_token_disables_the_api() {
    let mut h = harness().await;
    h.state.admin_token = String::new();
    for auth in [None, Some("Bearer "), Some("Bearer")] {
        let reply = h.call_raw(Method::GET, "/admin/customers", auth, "").await;
        assert_eq!(reply.0, StatusCode::UNAUTHORIZED);
    }
}

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
async fn unknown_ids_and_paths_are_404_and_wrong_methods_405() {
    let h = harness().await;
    for path in [
        "/admin/customers/nope",
        "/admin/teams/nope",
        "/admin/keys/nope",
        "/admin/providers/nope",
        "/admin/usage/key/nope",
    ] {
        let reply = h.get(path).await;
        assert_error(
            &reply,
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
        );
    }
    let reply = h.put("/admin/customers/nope", json!({"name": "x"})).await;
    assert_error(
        &reply,
        StatusCode::NOT_FOUND,
        "not_found_error",
        "not_found",
    );
    let reply = h
        .put(
            "/admin/providers/nope",
            json!({"kind": "openai", "base_url": "https://x"}),
        )
        .await;
    assert_error(
        &reply,
        StatusCode::NOT_FOUND,
        "not_found_error",
        "not_found",
    );
    let reply = h.post("/admin/budgets/team/nope/reset", json!({})).await;
    assert_error(
        &reply,
        StatusCode::NOT_FOUND,
        "not_found_error",
        "not_found",
    );

    for path in [
        "/admin/",
        "/admin/widgets",
        "/admin/customers/a/b",
        "/admin//customers",
        "/admin/usage/key",
        "/admin/budgets/key/x",
    ] {
        let reply = h.get(path).await;
        assert_error(
            &reply,
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
        );
    }

    for (method, path) in [
        (Method::DELETE, "/admin/customers"),
        (Method::PUT, "/admin/keys"),
        (Method::POST, "/admin/keys/x"),
        (Method::PATCH, "/admin/teams/x"),
        (Method::POST, "/admin/usage/key/x"),
        (Method::GET, "/admin/budgets/key/x/reset"),
        (Method::DELETE, "/admin/request-logs"),
    ] {
        let reply = h.call(method, path, None).await;
        assert_error(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
        );
    }
    assert_eq!(allowed_methods("/admin/keys"), Some("GET, POST"));
    assert_eq!(allowed_methods("/admin/keys/x"), Some("GET, PUT, DELETE"));
    assert_eq!(allowed_methods("/admin/budgets/key/x/reset"), Some("POST"));
    assert_eq!(allowed_methods("/admin/nope"), None);
    assert!(!h.was_notified().await);
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
    // References to missing parents.
    let reply = h
        .post(
            "/admin/teams",
            json!({"name": "t", "customer_id": "missing"}),
        )
        .await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_reference",
    );
    assert_eq!(reply.1["error"]["param"], "customer_id");
    let reply = h
        .post("/admin/keys", json!({"name": "k", "team_id": "missing"}))
        .await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_reference",
    );
    assert_eq!(reply.1["error"]["param"], "team_id");
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

#[tokio::test]
async fn usage_reports_the_current_period_and_reset_zeroes_spend() {
    let h = harness().await;
    let (_, created) = h
        .post(
            "/admin/keys",
            json!({"name": "k", "budget": {"limit_nanos": 5_000_000_000u64, "period": "daily"}}),
        )
        .await;
    let kid = id_of(&created["key"]);
    assert!(h.was_notified().await);

    // No usage yet.
    let (s, u) = h.get(&format!("/admin/usage/key/{kid}")).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["entity"], json!({"kind": "key", "id": kid}));
    assert_eq!(u["spent_nanos"], 0);
    assert_eq!(u["remaining_nanos"], 5_000_000_000u64);
    assert_eq!(u["spent_usd"], "0.000000000");
    assert_eq!(u["limit_usd"], "5.000000000");

    let entity = EntityRef::key(kid.clone());
    let now = store::now_unix();
    let ps = h
        .state
        .store
        .current_period_start(&entity, now)
        .await
        .unwrap();
    h.state
        .store
        .add_usage(&[UsageDelta {
            entity: entity.clone(),
            period_start: ps,
            spent_nanos: NanoUsd::from_nanos(1_234_567_890),
            requests: 3,
            prompt_tokens: 100,
            completion_tokens: 50,
        }])
        .await
        .unwrap();

    let (s, u) = h.get(&format!("/admin/usage/key/{kid}")).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["period_start"], ps);
    assert_eq!(u["period_start"].as_i64().unwrap() % 86_400, 0);
    assert_eq!(u["budget"]["period"], "daily");
    assert_eq!(u["spent_nanos"], 1_234_567_890u64);
    assert_eq!(u["spent_usd"], "1.234567890");
    assert_eq!(u["remaining_nanos"], 3_765_432_110u64);
    assert_eq!(u["remaining_usd"], "3.765432110");
    assert_eq!(u["requests"], 3);
    assert_eq!(u["prompt_tokens"], 100);
    assert_eq!(u["completion_tokens"], 50);
    assert!(!h.was_notified().await);

    let (s, r) = h
        .call(
            Method::POST,
            &format!("/admin/budgets/key/{kid}/reset"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["reset"], true);
    assert_eq!(r["spent_before_nanos"], 1_234_567_890u64);
    assert_eq!(r["spent_before_usd"], "1.234567890");
    assert!(h.was_notified().await);

    let (_, u) = h.get(&format!("/admin/usage/key/{kid}")).await;
    assert_eq!(u["spent_nanos"], 0);
    assert_eq!(u["remaining_nanos"], 5_000_000_000u64);
    assert_eq!(u["requests"], 3, "request counts survive a reset");
    assert!(u["reset_at"].is_i64());
    assert_eq!(h.state.store.budget_reset_count(&entity).await.unwrap(), 1);

    // Entities without a budget: lifetime counters, no remaining.
    let (_, team) = h.post("/admin/teams", json!({"name": "t"})).await;
    let (s, u) = h.get(&format!("/admin/usage/team/{}", id_of(&team))).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["budget"], Value::Null);
    assert_eq!(u["period_start"], 0);
    assert_eq!(u["remaining_nanos"], Value::Null);
    assert_eq!(u["limit_usd"], Value::Null);

    let reply = h.get("/admin/usage/project/x").await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_value",
    );
    assert_eq!(reply.1["error"]["param"], "kind");
}

#[tokio::test]
async fn provider_secrets_are_write_only() {
    let h = harness().await;
    let secret = "sk-test-0123456789abcd";
    let (s, p) = h
        .post(
            "/admin/providers",
            json!({
                "name": "openai",
                "kind": "openai",
                "base_url": "https://api.openai.com/v1",
                "config_json": {"organization": "org-1"},
                "secret": secret
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["secret"], "sk-…abcd");
    assert_eq!(p["config_json"], r#"{"organization":"org-1"}"#);
    assert!(h.was_notified().await);

    let reply = h
        .post(
            "/admin/providers",
            json!({"name": "openai", "kind": "openai", "base_url": "https://x"}),
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "conflict_error", "conflict");

    for path in ["/admin/providers", "/admin/providers/openai"] {
        let (s, body) = h.get(path).await;
        assert_eq!(s, StatusCode::OK);
        assert!(!body.to_string().contains(secret), "{body}");
        assert!(body.to_string().contains("sk-…abcd"), "{body}");
    }

    // Omitting the secret keeps it; a string replaces it; null clears it.
    let (s, p) = h
        .put(
            "/admin/providers/openai",
            json!({"kind": "openai", "base_url": "https://proxy.internal/v1", "config_json": "{}"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["base_url"], "https://proxy.internal/v1");
    assert_eq!(p["secret"], "sk-…abcd");
    let stored = h.state.store.get_provider("openai").await.unwrap().unwrap();
    assert_eq!(stored.secret.as_deref(), Some(secret));

    let (_, p) = h
        .put(
            "/admin/providers/openai",
            json!({"kind": "openai", "base_url": "https://x", "secret": "sk-new-999999999wxyz"}),
        )
        .await;
    assert_eq!(p["secret"], "sk-…wxyz");

    let (_, p) = h
        .put(
            "/admin/providers/openai",
            json!({"kind": "openai", "base_url": "https://x", "secret": null}),
        )
        .await;
    assert_eq!(p["secret"], Value::Null);
    let stored = h.state.store.get_provider("openai").await.unwrap().unwrap();
    assert_eq!(stored.secret, None);

    let (s, d) = h.delete("/admin/providers/openai").await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["id"], "openai");
}

#[tokio::test]
async fn request_logs_newest_first_with_a_limit() {
    let h = harness().await;
    let logs: Vec<RequestLog> = (0..3)
        .map(|i| RequestLog {
            id: format!("req-{i}"),
            ts_ms: 1_700_000_000_000 + i,
            key_id: None,
            team_id: None,
            customer_id: None,
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            status: 200,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_nanos: NanoUsd::from_nanos(1500),
            latency_us: 1000,
            overhead_us: 50,
            stream: false,
            error_code: None,
        })
        .collect();
    h.state.store.insert_request_logs(&logs).await.unwrap();

    let (s, body) = h.get("/admin/request-logs").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert_eq!(body["data"][0]["id"], "req-2");

    let (_, body) = h.get("/admin/request-logs?limit=2").await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["req-2", "req-1"]);

    let (s, body) = h.get("/admin/request-logs?x=1&limit=5000").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);

    for bad in ["limit=0", "limit=abc", "limit=-1", "limit="] {
        let reply = h.get(&format!("/admin/request-logs?{bad}")).await;
        assert_error(
            &reply,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
        );
        assert_eq!(reply.1["error"]["param"], "limit");
    }
}

#[test]
fn constant_time_compare() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
}

#[tokio::test]
async fn route_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let h = harness().await;
    let fut = route(
        &Method::GET,
        "/admin/keys",
        None,
        None,
        Bytes::new(),
        &h.state,
    );
    assert_send(&fut);
    drop(fut);
}

/// Sends one raw HTTP/1.1 request to `addr` and returns the whole response text.
async fn raw_http(addr: std::net::SocketAddr, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn handle_over_http() {
    use std::convert::Infallible;

    let h = harness().await;
    let state = Arc::new(AdminState {
        store: h.state.store.clone(),
        admin_token: TOKEN.to_owned(),
        changed: h.state.changed.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(super::handle(req, &state).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");

    let body = r#"{"name":"acme"}"#;
    let resp = raw_http(
        addr,
        format!(
            "POST /admin/customers HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert!(resp.contains("content-type: application/json"), "{resp}");
    assert!(resp.contains(r#""name":"acme""#), "{resp}");
    assert!(h.was_notified().await);

    // Chunked bodies go through the same limit-checked reader.
    let resp = raw_http(
        addr,
        format!(
            "POST /admin/teams HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{{\"nam\r\n8\r\ne\":\"t1\"}}\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert!(h.was_notified().await);

    let resp = raw_http(
        addr,
        format!("GET /admin/customers HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("acme"), "{resp}");

    let resp = raw_http(
        addr,
        format!("DELETE /admin/customers HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    assert!(resp.contains("allow: GET, POST"), "{resp}");

    // Over 1 MiB declared: 413 before the body is read.
    let resp = raw_http(
        addr,
        format!(
            "POST /admin/customers HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            super::MAX_BODY_BYTES + 1
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("request_too_large"), "{resp}");

    // Without the token: 401 whatever the body.
    let resp = raw_http(
        addr,
        format!(
            "POST /admin/customers HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            super::MAX_BODY_BYTES + 1
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("invalid_admin_token"), "{resp}");
    assert!(!h.was_notified().await);
    server.abort();
}
