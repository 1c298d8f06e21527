//! The files API: upload (multipart `file` and `purpose`), list (`?purpose=` filters),
//! retrieve, download the bytes as uploaded, delete. Files are processed as soon as they
//! are stored.

use bytes::Bytes;
use serde_json::{json, Value};

use super::multipart::Form;
use super::store::{self, ListQuery, Store};
use super::Call;
use crate::reply::{now, Output, Rejection};

#[derive(Debug)]
pub struct StoredFile {
    pub(super) id: String,
    filename: String,
    purpose: String,
    created_at: u64,
    pub(super) data: Bytes,
}

impl StoredFile {
    /// OpenAI's file object.
    pub(super) fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.data.len(),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
        })
    }
}

/// `POST /v1/files`.
pub(super) fn upload(store: &mut Store, call: &Call<'_>) -> Result<Output, Rejection> {
    let form = Form::parse(call.content_type, call.body)?;
    let file = form.file("file")?;
    let purpose = form
        .text("purpose")?
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Rejection::invalid("purpose", "Missing required parameter: 'purpose'."))?;
    let stored = StoredFile {
        id: store.next_file_id(),
        filename: file.filename.clone().unwrap_or_default(),
        purpose: purpose.to_owned(),
        created_at: now(),
        data: Bytes::copy_from_slice(file.data),
    };
    let object = stored.object();
    store.files.push(stored);
    Ok(store::json(object))
}

/// `GET /v1/files`.
pub(super) fn list(store: &Store, query: &ListQuery) -> Output {
    let objects = store
        .files
        .iter()
        .filter(|f| query.purpose.as_ref().is_none_or(|p| *p == f.purpose))
        .map(StoredFile::object)
        .collect();
    store::list(objects, query)
}

/// `GET /v1/files/{id}/content`: the bytes as uploaded.
pub(super) fn content(file: &StoredFile) -> Output {
    Output::Raw {
        content_type: "application/octet-stream",
        body: file.data.clone(),
    }
}

/// `DELETE /v1/files/{id}`.
pub(super) fn delete(store: &mut Store, id: &str) -> Result<Output, Rejection> {
    store.file(id)?;
    store.files.retain(|f| f.id != id);
    Ok(store::json(
        json!({"id": id, "object": "file", "deleted": true}),
    ))
}

/// Upload `data` as `name` for the store's tests; the file object.
#[cfg(test)]
pub(super) fn upload_file(store: &mut Store, name: &str, data: &[u8], purpose: &str) -> Value {
    let parts = [
        ("purpose", None, purpose.as_bytes()),
        ("file", Some(name), data),
    ];
    let out = super::testing::form_call(|call| upload(store, call), &parts, None);
    crate::reply::json(&out.unwrap().into_json())
}

#[cfg(test)]
mod tests {
    use super::super::testing::form_call;
    use super::*;
    use crate::reply::json as parse;

    fn ids(out: Output) -> Vec<String> {
        parse(&out.into_json())["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn upload_list_content_delete() {
        let mut store = Store::new();
        let first = upload_file(&mut store, "in.jsonl", b"{}\n{}\n", "batch");
        assert_eq!(first["id"], "file-1");
        assert_eq!(first["object"], "file");
        assert_eq!(first["bytes"], 6);
        assert_eq!(first["filename"], "in.jsonl");
        assert_eq!(first["purpose"], "batch");
        assert_eq!(first["status"], "processed");
        assert!(first["status_details"].is_null() && first["created_at"].is_u64());
        upload_file(&mut store, "notes.txt", b"hi", "assistants");

        assert_eq!(
            ids(list(&store, &ListQuery::default())),
            ["file-1", "file-2"]
        );
        let batch_only = ListQuery {
            purpose: Some("batch".into()),
            ..ListQuery::default()
        };
        assert_eq!(ids(list(&store, &batch_only)), ["file-1"]);

        let (kind, bytes) = content(store.file("file-1").unwrap()).into_raw();
        assert_eq!(
            (kind, &bytes[..]),
            ("application/octet-stream", &b"{}\n{}\n"[..])
        );

        let deleted = parse(&delete(&mut store, "file-1").unwrap().into_json());
        assert_eq!(
            deleted,
            json!({"id": "file-1", "object": "file", "deleted": true})
        );
        assert_eq!(ids(list(&store, &ListQuery::default())), ["file-2"]);
        let gone = store.file("file-1").unwrap_err();
        assert_eq!(
            (gone.status, gone.message.as_str(), gone.kind, gone.param),
            (
                404,
                "No such File object: file-1",
                "invalid_request_error",
                Some("id")
            )
        );
        assert_eq!(delete(&mut store, "file-1").unwrap_err().status, 404);
        // Ids are never reused.
        assert_eq!(upload_file(&mut store, "x", b"", "batch")["id"], "file-3");
    }

    #[test]
    fn upload_needs_file_and_purpose() {
        let mut store = Store::new();
        for (parts, param) in [
            (vec![("file", Some("a"), &b"x"[..])], "purpose"),
            (vec![("purpose", None, &b"batch"[..])], "file"),
            (
                vec![("purpose", None, &b"batch"[..]), ("file", None, &b"x"[..])],
                "file",
            ),
        ] {
            let out = form_call(|call| upload(&mut store, call), &parts, None);
            assert_eq!(out.unwrap_err().param, Some(param));
        }
        assert!(store.files.is_empty());
    }
}
