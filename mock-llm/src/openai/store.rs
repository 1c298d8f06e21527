//! The process-wide state behind the files and batches APIs: uploaded files, batches, the
//! counters their ids come from, and the paging of their lists. One store serves OpenAI's
//! `/v1/...` and Azure's `/openai/...` paths alike (one account, one resource).

use std::sync::{Mutex, PoisonError};

use http::Method;
use serde_json::{json, Value};

use super::batches::Batch;
use super::files::StoredFile;
use super::{batches, files, Call};
use crate::reply::{to_bytes, Output, Rejection};

/// Everything uploaded and created since the process started.
#[derive(Debug, Default)]
pub struct Store {
    pub(super) files: Vec<StoredFile>,
    pub(super) batches: Vec<Batch>,
    last_file: u64,
    last_batch: u64,
}

impl Store {
    pub const fn new() -> Self {
        Self {
            files: Vec::new(),
            batches: Vec::new(),
            last_file: 0,
            last_batch: 0,
        }
    }

    pub(super) fn next_file_id(&mut self) -> String {
        self.last_file += 1;
        format!("file-{}", self.last_file)
    }

    pub(super) fn next_batch_id(&mut self) -> String {
        self.last_batch += 1;
        format!("batch_{}", self.last_batch)
    }

    pub(super) fn file(&self, id: &str) -> Result<&StoredFile, Rejection> {
        self.files
            .iter()
            .find(|f| f.id == id)
            .ok_or_else(|| Rejection::no_such("File", id))
    }
}

static STORE: Mutex<Store> = Mutex::new(Store::new());

/// A files or batches path; which operation it is also depends on the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorePath {
    Files,
    File(String),
    FileContent(String),
    Batches,
    Batch(String),
    BatchCancel(String),
}

impl StorePath {
    /// `rest` is the path below `/v1/` or `/openai/`, without a trailing slash.
    pub fn parse(rest: &str) -> Option<Self> {
        let mut segments = rest.split('/');
        let path = match (segments.next()?, segments.next(), segments.next()) {
            ("files", None, _) => StorePath::Files,
            ("files", Some(id), None) => StorePath::File(id.to_owned()),
            ("files", Some(id), Some("content")) => StorePath::FileContent(id.to_owned()),
            ("batches", None, _) => StorePath::Batches,
            ("batches", Some(id), None) => StorePath::Batch(id.to_owned()),
            ("batches", Some(id), Some("cancel")) => StorePath::BatchCancel(id.to_owned()),
            _ => return None,
        };
        let id_ok = match &path {
            StorePath::Files | StorePath::Batches => true,
            StorePath::File(id)
            | StorePath::FileContent(id)
            | StorePath::Batch(id)
            | StorePath::BatchCancel(id) => !id.is_empty(),
        };
        (id_ok && segments.next().is_none()).then_some(path)
    }

    /// The methods the path serves, as the `Allow` header lists them.
    pub fn allowed(&self) -> &'static str {
        match self {
            StorePath::Files | StorePath::Batches => "GET, POST",
            StorePath::File(_) => "GET, DELETE",
            StorePath::FileContent(_) | StorePath::Batch(_) => "GET",
            StorePath::BatchCancel(_) => "POST",
        }
    }
}

/// The query of a list request. `limit` and `after` page the list (without them it is
/// whole); `order=desc` lists newest first (the default is oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub purpose: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<String>,
    pub newest_first: bool,
}

/// Serve `method` on `path`, which the server has checked against [`StorePath::allowed`];
/// so each path's other arm is its other allowed method.
pub fn serve(
    path: &StorePath,
    method: &Method,
    call: &Call<'_>,
    query: &ListQuery,
) -> Result<Output, Rejection> {
    // A poisoned lock only means a handler panicked; the store itself is still whole.
    let mut store = STORE.lock().unwrap_or_else(PoisonError::into_inner);
    match (path, method) {
        (StorePath::Files, &Method::GET) => Ok(files::list(&store, query)),
        (StorePath::Files, _) => files::upload(&mut store, call),
        (StorePath::File(id), &Method::DELETE) => files::delete(&mut store, id),
        (StorePath::File(id), _) => Ok(json(store.file(id)?.object())),
        (StorePath::FileContent(id), _) => Ok(files::content(store.file(id)?)),
        (StorePath::Batches, &Method::GET) => Ok(batches::list(&store, query)),
        (StorePath::Batches, _) => batches::create(&mut store, call),
        (StorePath::Batch(id), _) => batches::retrieve(&mut store, id),
        (StorePath::BatchCancel(id), _) => batches::cancel(&mut store, id),
    }
}

pub(super) fn json(value: Value) -> Output {
    Output::Json(to_bytes(&value))
}

/// OpenAI's list object over `objects` (each with an `id`), paged by `query`.
pub(super) fn list(mut objects: Vec<Value>, query: &ListQuery) -> Output {
    if query.newest_first {
        objects.reverse();
    }
    if let Some(after) = &query.after {
        let start = objects.iter().position(|o| o["id"] == after.as_str());
        objects.drain(..start.map_or(0, |i| i + 1));
    }
    let has_more = query.limit.is_some_and(|limit| objects.len() > limit);
    objects.truncate(query.limit.unwrap_or(objects.len()));
    let id = |o: Option<&Value>| o.map_or(Value::Null, |o| o["id"].clone());
    json(json!({
        "object": "list",
        "first_id": id(objects.first()),
        "last_id": id(objects.last()),
        "has_more": has_more,
        "data": objects,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::json as parse;

    #[test]
    fn paths() {
        let p = StorePath::parse;
        assert_eq!(p("files"), Some(StorePath::Files));
        assert_eq!(p("files/file-1"), Some(StorePath::File("file-1".into())));
        assert_eq!(
            p("files/file-1/content"),
            Some(StorePath::FileContent("file-1".into()))
        );
        assert_eq!(
            p("batches/b/cancel"),
            Some(StorePath::BatchCancel("b".into()))
        );
        for bad in [
            "files/",
            "files/x/y",
            "files/x/content/z",
            "batches//cancel",
            "models",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
        assert_eq!(StorePath::File("x".into()).allowed(), "GET, DELETE");
    }

    #[test]
    fn list_pages() {
        let objects = || {
            (1..=4)
                .map(|i| json!({"id": format!("o{i}")}))
                .collect::<Vec<_>>()
        };
        let ids = |out: Output| {
            let v = parse(&out.into_json());
            let ids: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect();
            (
                ids,
                v["has_more"].as_bool().unwrap(),
                v["first_id"].clone(),
                v["last_id"].clone(),
            )
        };
        let all = ids(list(objects(), &ListQuery::default()));
        assert_eq!(
            all,
            (
                vec!["o1".into(), "o2".into(), "o3".into(), "o4".into()],
                false,
                json!("o1"),
                json!("o4")
            )
        );
        let page = ListQuery {
            limit: Some(2),
            after: Some("o1".into()),
            ..ListQuery::default()
        };
        assert_eq!(ids(list(objects(), &page)).0, ["o2", "o3"]);
        assert!(ids(list(objects(), &page)).1);
        let newest = ListQuery {
            newest_first: true,
            limit: Some(1),
            ..ListQuery::default()
        };
        assert_eq!(ids(list(objects(), &newest)).0, ["o4"]);
        let empty = ids(list(Vec::new(), &ListQuery::default()));
        assert_eq!(empty, (vec![], false, Value::Null, Value::Null));
    }
}
