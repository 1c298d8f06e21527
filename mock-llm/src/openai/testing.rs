//! Test-only helpers for the upload and media handlers: requests built as JSON or as
//! multipart forms, and replies read back.

use serde_json::Value;

use super::Call;
use crate::reply::{json, Output, Rejection};

/// A multipart part: name, file name (for file parts), bytes.
pub type FormPart<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// The content type [`form_body`] goes with.
pub const FORM_TYPE: &str = "multipart/form-data; boundary=XyZ";

/// A form body of `parts` under the boundary `XyZ`.
pub fn form_body(parts: &[FormPart<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        if let Some(f) = filename {
            body.extend_from_slice(format!("\"; filename=\"{f}").as_bytes());
        }
        body.extend_from_slice(b"\"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

/// `handler` on a form of `parts`, as sent to `deployment` (Azure) or not.
pub fn form_call<T>(
    handler: impl FnOnce(&Call<'_>) -> T,
    parts: &[FormPart<'_>],
    deployment: Option<&str>,
) -> T {
    let body = form_body(parts);
    handler(&Call {
        body: &body,
        content_type: Some(FORM_TYPE),
        deployment,
    })
}

/// `handler` on `body` sent as JSON.
pub fn json_call<T>(handler: impl FnOnce(&Call<'_>) -> T, body: &Value) -> T {
    let body = body.to_string();
    handler(&Call {
        body: body.as_bytes(),
        ..Call::default()
    })
}

/// A reply that must be JSON, parsed.
pub fn reply(out: Result<Output, Rejection>) -> Result<Value, Rejection> {
    out.map(|out| json(&out.into_json()))
}
