//! The batches API: create from an uploaded input file, retrieve, list, cancel. Nothing is
//! ever run: a batch stays `validating` until it is cancelled, so a test sees the same
//! object every time it polls. Cancelling answers `cancelling` and the batch is
//! `cancelled` from then on, the two steps OpenAI takes.

use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{self, ListQuery, Store};
use super::Call;
use crate::reply::{now, Output, Rejection};

/// How long a batch has before it would expire (its `completion_window`, `24h`).
const EXPIRES_AFTER_SECS: u64 = 24 * 60 * 60;
/// The endpoints a batch may call, as OpenAI names them and as Azure does (without `/v1`).
const ENDPOINTS: [&str; 8] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
];

#[derive(Debug)]
pub struct Batch {
    id: String,
    endpoint: String,
    input_file_id: String,
    completion_window: String,
    created_at: u64,
    metadata: Value,
    /// Requests in the input file: its non-empty lines.
    total: usize,
    cancelled_at: Option<u64>,
}

impl Batch {
    /// OpenAI's batch object; `cancelling` is the answer to the cancel request itself.
    fn object(&self, cancelling: bool) -> Value {
        let status = match self.cancelled_at {
            Some(_) if cancelling => "cancelling",
            Some(_) => "cancelled",
            None => "validating",
        };
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": null,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": status,
            "output_file_id": null,
            "error_file_id": null,
            "created_at": self.created_at,
            "in_progress_at": null,
            "expires_at": self.created_at + EXPIRES_AFTER_SECS,
            "finalizing_at": null,
            "completed_at": null,
            "failed_at": null,
            "expired_at": null,
            "cancelling_at": self.cancelled_at,
            "cancelled_at": self.cancelled_at.filter(|_| !cancelling),
            "request_counts": {"total": self.total, "completed": 0, "failed": 0},
            "metadata": self.metadata,
        })
    }
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(default)]
    input_file_id: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Value,
}

fn required(value: Option<String>, param: &'static str) -> Result<String, Rejection> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Rejection::invalid(param, format!("Missing required parameter: '{param}'.")))
}

/// `POST /v1/batches`.
pub(super) fn create(store: &mut Store, call: &Call<'_>) -> Result<Output, Rejection> {
    let req: CreateRequest = call.json()?;
    let input_file_id = required(req.input_file_id, "input_file_id")?;
    let endpoint = required(req.endpoint, "endpoint")?;
    let completion_window = required(req.completion_window, "completion_window")?;
    if !ENDPOINTS.contains(&endpoint.as_str()) {
        return Err(Rejection::invalid(
            "endpoint",
            format!(
                "Invalid endpoint {endpoint:?}: expected one of {}",
                ENDPOINTS.join(", ")
            ),
        ));
    }
    let total = match store.file(&input_file_id) {
        Ok(file) => file
            .data
            .split(|b| *b == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .count(),
        // An unknown input file is a bad argument, not a missing batch.
        Err(missing) => {
            return Err(Rejection {
                status: 400,
                param: Some("input_file_id"),
                ..missing
            })
        }
    };
    let batch = Batch {
        id: store.next_batch_id(),
        endpoint,
        input_file_id,
        completion_window,
        created_at: now(),
        metadata: req.metadata,
        total,
        cancelled_at: None,
    };
    let object = batch.object(false);
    store.batches.push(batch);
    Ok(store::json(object))
}

fn find<'a>(store: &'a mut Store, id: &str) -> Result<&'a mut Batch, Rejection> {
    store
        .batches
        .iter_mut()
        .find(|b| b.id == id)
        .ok_or_else(|| Rejection::no_such("Batch", id))
}

/// `GET /v1/batches/{id}`.
pub(super) fn retrieve(store: &mut Store, id: &str) -> Result<Output, Rejection> {
    Ok(store::json(find(store, id)?.object(false)))
}

/// `POST /v1/batches/{id}/cancel`: `cancelling` the first time, and `cancelled` when a
/// cancelled batch is cancelled again.
pub(super) fn cancel(store: &mut Store, id: &str) -> Result<Output, Rejection> {
    let batch = find(store, id)?;
    let first = batch.cancelled_at.is_none();
    batch.cancelled_at.get_or_insert_with(now);
    Ok(store::json(batch.object(first)))
}

/// `GET /v1/batches`.
pub(super) fn list(store: &Store, query: &ListQuery) -> Output {
    let objects = store.batches.iter().map(|b| b.object(false)).collect();
    store::list(objects, query)
}

#[cfg(test)]
mod tests {
    use super::super::files::upload_file;
    use super::super::testing::{json_call, reply};
    use super::*;
    use crate::reply::json as parse;

    fn create_json(store: &mut Store, body: Value) -> Result<Value, Rejection> {
        reply(json_call(|call| create(store, call), &body))
    }

    #[test]
    fn create_retrieve_cancel() {
        let mut store = Store::new();
        let lines = b"{\"custom_id\":\"a\"}\n\n  \n{\"custom_id\":\"b\"}\r\n{\"custom_id\":\"c\"}";
        let file = upload_file(&mut store, "in.jsonl", lines, "batch");
        let created = create_json(
            &mut store,
            json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                   "completion_window": "24h", "metadata": {"job": "nightly"}}),
        )
        .unwrap();
        assert_eq!(created["id"], "batch_1");
        assert_eq!(created["object"], "batch");
        assert_eq!(created["status"], "validating");
        assert_eq!(created["input_file_id"], "file-1");
        assert_eq!(
            created["request_counts"],
            json!({"total": 3, "completed": 0, "failed": 0})
        );
        assert_eq!(created["metadata"], json!({"job": "nightly"}));
        let created_at = created["created_at"].as_u64().unwrap();
        assert_eq!(created["expires_at"], created_at + EXPIRES_AFTER_SECS);
        for null in ["errors", "output_file_id", "in_progress_at", "cancelled_at"] {
            assert!(created[null].is_null(), "{null}");
        }

        let again = parse(&retrieve(&mut store, "batch_1").unwrap().into_json());
        assert_eq!(again, created);

        let cancelling = parse(&cancel(&mut store, "batch_1").unwrap().into_json());
        assert_eq!(cancelling["status"], "cancelling");
        assert!(cancelling["cancelling_at"].is_u64() && cancelling["cancelled_at"].is_null());
        let cancelled = parse(&retrieve(&mut store, "batch_1").unwrap().into_json());
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["cancelled_at"], cancelling["cancelling_at"]);
        let twice = parse(&cancel(&mut store, "batch_1").unwrap().into_json());
        assert_eq!(twice["status"], "cancelled");

        let listed = parse(&list(&store, &ListQuery::default()).into_json());
        assert_eq!(listed["data"][0], cancelled);
        assert_eq!(
            (listed["first_id"].as_str(), listed["has_more"].as_bool()),
            (Some("batch_1"), Some(false))
        );

        for missing in [
            retrieve(&mut store, "batch_9"),
            cancel(&mut store, "batch_9"),
        ] {
            let err = missing.unwrap_err();
            assert_eq!(
                (err.status, err.message.as_str()),
                (404, "No such Batch object: batch_9")
            );
        }
    }

    #[test]
    fn create_refusals() {
        let mut store = Store::new();
        upload_file(&mut store, "in.jsonl", b"{}", "batch");
        let ok = json!({"input_file_id": "file-1", "endpoint": "/chat/completions", "completion_window": "24h"});
        assert_eq!(
            create_json(&mut store, ok.clone()).unwrap()["metadata"],
            Value::Null
        );
        for (field, value, param) in [
            ("input_file_id", Value::Null, "input_file_id"),
            ("input_file_id", json!("file-404"), "input_file_id"),
            ("endpoint", Value::Null, "endpoint"),
            ("endpoint", json!("/v1/images/generations"), "endpoint"),
            ("completion_window", json!(""), "completion_window"),
        ] {
            let mut body = ok.clone();
            body[field] = value;
            let err = create_json(&mut store, body).unwrap_err();
            assert_eq!((err.status, err.param), (400, Some(param)), "{field}");
        }
        assert_eq!(create_json(&mut store, json!([])).unwrap_err().status, 400);
        assert_eq!(store.batches.len(), 1);
    }
}
