//! Every endpoint wants the admin token; unknown paths and wrong methods; the API over HTTP.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::{assert_error, harness, TOKEN};
use crate::coordinator::admin::{
    allowed_methods, constant_time_eq, handle, route, AdminState, MAX_BODY_BYTES,
};

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
        fleet: None,
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
                    async move { Ok::<_, Infallible>(handle(req, &state).await) }
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
            MAX_BODY_BYTES + 1
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
            MAX_BODY_BYTES + 1
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("invalid_admin_token"), "{resp}");
    assert!(!h.was_notified().await);
    server.abort();
}
