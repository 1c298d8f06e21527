//! Providers: secrets go in and never come out.

use hyper::StatusCode;
use serde_json::{json, Value};

use super::{assert_error, harness};

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
