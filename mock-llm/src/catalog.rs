//! The providers' model catalogs, served deterministically so a gateway's catalog fetches
//! run offline:
//!
//! | dialect | request | answer |
//! |---|---|---|
//! | OpenAI | `GET /v1/models` | [`crate::openai::MODELS_BODY`], one page |
//! | Anthropic | `GET /v1/models` with `anthropic-version` | [`ANTHROPIC_MODELS`], `limit` per page (default 2), `after_id` paging with `has_more` |
//! | Gemini | `GET /v1beta/models` | [`GEMINI_MODELS`] as `models/NAME`, `pageSize` per page (default 2), `nextPageToken` |
//! | Azure | `GET /openai/deployments?api-version=V` | [`AZURE_DEPLOYMENTS`] for `V` before `2023-05-15` (later versions dropped the listing: 404, as Azure does) |
//!
//! The default page sizes are far smaller than the real APIs' (20, 50) so that every
//! client's paging is exercised. `POST /mock/catalog?fail=1` makes every catalog request
//! answer 503 until `POST /mock/catalog?fail=0`, so a test can watch a refresh fail. The
//! required key (`--require-key`) is checked in any of the providers' headers.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// Anthropic's catalog: id, display name, created_at.
pub const ANTHROPIC_MODELS: &[(&str, &str, &str)] = &[
    (
        "claude-3-5-sonnet-20241022",
        "Claude Sonnet 3.5 (New)",
        "2024-10-22T00:00:00Z",
    ),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
    (
        "claude-3-opus-20240229",
        "Claude Opus 3",
        "2024-02-29T00:00:00Z",
    ),
];

/// Gemini's catalog: name (without `models/`), display name.
pub const GEMINI_MODELS: &[(&str, &str)] = &[
    ("gemini-1.5-flash", "Gemini 1.5 Flash"),
    ("gemini-1.5-pro", "Gemini 1.5 Pro"),
    ("gemini-2.0-flash", "Gemini 2.0 Flash"),
    ("text-embedding-004", "Text Embedding 004"),
];

/// Azure deployments: deployment id, model.
pub const AZURE_DEPLOYMENTS: &[(&str, &str)] = &[
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("embeddings", "text-embedding-3-small"),
];

/// Page size when the request names none.
const DEFAULT_PAGE: usize = 2;
/// The first Azure `api-version` without the deployments listing.
const AZURE_LISTING_REMOVED: &str = "2023-05-15";

/// Set by `POST /mock/catalog?fail=1`: catalog requests answer 503.
static FAILING: AtomicBool = AtomicBool::new(false);

type Reply = Response<Full<Bytes>>;

/// The answer when `req` is a catalog request or the catalog control; `None` otherwise.
pub fn serve<B>(req: &Request<B>, key: Option<&str>) -> Option<Reply> {
    let path = req.uri().path();
    let param = |name: &str| {
        req.uri().query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then_some(v)
        })
    };
    if req.method() == Method::POST && path == "/mock/catalog" {
        FAILING.store(param("fail") == Some("1"), Ordering::Relaxed);
        return Some(reply(
            StatusCode::OK,
            json!({"failing": param("fail") == Some("1")}),
        ));
    }
    if req.method() != Method::GET {
        return None;
    }
    let anthropic = req.headers().contains_key("anthropic-version");
    let page_size = |name: &str| {
        param(name)
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_PAGE)
    };
    let answer = match path {
        "/v1/models" if anthropic => anthropic_page(param("after_id"), page_size("limit")),
        "/v1/models" => reply(
            StatusCode::OK,
            serde_json::from_slice(crate::openai::MODELS_BODY).ok()?,
        ),
        "/v1beta/models" => gemini_page(param("pageToken"), page_size("pageSize")),
        "/openai/deployments" => azure(param("api-version")?),
        _ => return None,
    };
    if FAILING.load(Ordering::Relaxed) {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "mock catalog failure",
        ));
    }
    if !authorized(req.headers(), req.uri().query(), key) {
        return Some(error(StatusCode::UNAUTHORIZED, "invalid API key"));
    }
    Some(answer)
}

/// The key in any header a provider takes it in, or Gemini's `key=` query parameter.
fn authorized(headers: &HeaderMap, query: Option<&str>, key: Option<&str>) -> bool {
    let Some(key) = key else { return true };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer "));
    let in_query = query.is_some_and(|q| q.split('&').any(|p| p == format!("key={key}")));
    [
        bearer,
        header("x-api-key"),
        header("x-goog-api-key"),
        header("api-key"),
    ]
    .contains(&Some(key))
        || in_query
}

fn anthropic_page(after: Option<&str>, limit: usize) -> Reply {
    let start = after
        .and_then(|id| ANTHROPIC_MODELS.iter().position(|(m, ..)| *m == id))
        .map_or(0, |i| i + 1);
    let page: Vec<Value> = ANTHROPIC_MODELS
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, name, created)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": created})
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({
            "has_more": start + page.len() < ANTHROPIC_MODELS.len(),
            "first_id": page.first().map(|m| m["id"].clone()),
            "last_id": page.last().map(|m| m["id"].clone()),
            "data": page,
        }),
    )
}

/// Page tokens are `page-N`, N the index of the page's first model.
fn gemini_page(token: Option<&str>, size: usize) -> Reply {
    let start = token
        .and_then(|t| t.strip_prefix("page-")?.parse().ok())
        .unwrap_or(0);
    let models: Vec<Value> = GEMINI_MODELS
        .iter()
        .skip(start)
        .take(size)
        .map(|(name, display)| {
            json!({
                "name": format!("models/{name}"),
                "displayName": display,
                "supportedGenerationMethods": ["generateContent"],
            })
        })
        .collect();
    let mut body = json!({"models": models});
    if start + size < GEMINI_MODELS.len() {
        body["nextPageToken"] = json!(format!("page-{}", start + size));
    }
    reply(StatusCode::OK, body)
}

fn azure(api_version: &str) -> Reply {
    if api_version >= AZURE_LISTING_REMOVED {
        return error(StatusCode::NOT_FOUND, "Resource not found");
    }
    let data: Vec<Value> = AZURE_DEPLOYMENTS
        .iter()
        .map(|(id, model)| {
            json!({"id": id, "model": model, "object": "deployment", "status": "succeeded",
                   "created_at": 1_700_000_000})
        })
        .collect();
    reply(StatusCode::OK, json!({"object": "list", "data": data}))
}

fn error(status: StatusCode, message: &str) -> Reply {
    reply(
        status,
        json!({"error": {"message": message, "type": "mock_catalog_error", "code": status.as_u16()}}),
    )
}

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, headers: &[(&str, &str)]) -> Value {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = serve(&req.body(()).unwrap(), Some("k")).unwrap();
        let (parts, body) = res.into_parts();
        let bytes = collect_body(body);
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        v["status"] = json!(parts.status.as_u16());
        v
    }

    fn collect_body(body: Full<Bytes>) -> Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn anthropic_pages_until_has_more_is_false() {
        let headers = [("anthropic-version", "2023-06-01"), ("x-api-key", "k")];
        let first = get("/v1/models", &headers);
        assert_eq!(first["has_more"], true);
        assert_eq!(first["data"].as_array().unwrap().len(), 2);
        let last_id = first["last_id"].as_str().unwrap();
        let second = get(&format!("/v1/models?after_id={last_id}&limit=5"), &headers);
        assert_eq!(second["has_more"], false);
        assert_eq!(second["data"][0]["id"], "claude-3-opus-20240229");
    }

    #[test]
    fn gemini_pages_by_token() {
        let first = get("/v1beta/models?key=k", &[]);
        assert_eq!(first["models"][0]["name"], "models/gemini-1.5-flash");
        let token = first["nextPageToken"].as_str().unwrap();
        let second = get(
            &format!("/v1beta/models?pageToken={token}"),
            &[("x-goog-api-key", "k")],
        );
        assert_eq!(second["models"].as_array().unwrap().len(), 2);
        assert!(second.get("nextPageToken").is_none());
    }

    #[test]
    fn azure_openai_and_auth() {
        let listed = get(
            "/openai/deployments?api-version=2022-12-01",
            &[("api-key", "k")],
        );
        assert_eq!(listed["data"][1]["id"], "embeddings");
        let gone = get(
            "/openai/deployments?api-version=2024-10-21",
            &[("api-key", "k")],
        );
        assert_eq!(gone["status"], 404);
        let openai = get("/v1/models", &[("authorization", "Bearer k")]);
        assert_eq!(openai["data"][0]["id"], "gpt-4o-mini");
        assert_eq!(get("/v1/models", &[])["status"], 401);
    }
}
