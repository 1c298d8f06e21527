//! Tests of the admin API over a real SQLite store in a temporary directory, driven through
//! [`route`] (the whole API after the body has been read), by resource: access (the token,
//! paths and methods, HTTP), entities (customers, teams, keys), providers, usage (usage,
//! budget resets, request logs). This file holds the harness they share.

mod access;
mod entities;
mod providers;
mod usage;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use store::{SecretBox, Store};

use super::{route, AdminState};

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
            fleet: None,
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
