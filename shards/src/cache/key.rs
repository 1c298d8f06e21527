//! The exact cache's key: SHA-256 of the scope the answer belongs to, the target it was asked
//! of and the request normalized, so that two requests that must get the same answer get
//! the same key and two that may not never do.
//!
//! Normalized: the body's JSON with object keys in sorted order (so field order and
//! whitespace do not matter) and without the fields that change how an answer is delivered
//! or logged but not the answer itself (`model`, which the resolved target replaces;
//! `stream` and `stream_options`, since a stream is replayed from a whole answer and back;
//! `user`, `metadata` and `store`). Every other parameter is part of the key. Credentials
//! are never in the body the gateway hashes: they travel in headers, which are not hashed.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key's version: bumped when the normalization changes, so that entries a fleet's
/// older nodes wrote are not mistaken for new ones.
const VERSION: &[u8] = b"ringgate-cache-v1";

/// Fields that do not change the answer (see the module docs).
const NOT_HASHED: [&str; 6] = [
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
];

/// What a cached answer is: a chat completion (chat, Anthropic Messages and Responses
/// clients share it, being served from its chat form) or an embeddings list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Chat,
    Embeddings,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "chat" => Some(Self::Chat),
            "embeddings" => Some(Self::Embeddings),
            _ => None,
        }
    }
}

/// The parts of a key.
pub struct KeyParts<'a> {
    pub form: Form,
    /// `key:<id>`, `team:<id>` or `global`.
    pub scope: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    /// The request body in the form the answer is cached in (chat form for converted APIs).
    pub body: &'a [u8],
}

/// The key, or `None` when the body is not a JSON object (such a request is refused later).
pub fn cache_key(parts: &KeyParts<'_>) -> Option<[u8; 32]> {
    let value: Value = serde_json::from_slice(parts.body).ok()?;
    let Value::Object(fields) = value else {
        return None;
    };
    let mut h = Sha256::new();
    for part in [
        VERSION,
        parts.form.as_str().as_bytes(),
        parts.scope.as_bytes(),
        parts.provider.as_bytes(),
        parts.model.as_bytes(),
    ] {
        // Length-prefixed, so that no two different part lists hash the same bytes.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let mut names: Vec<&String> = fields
        .keys()
        .filter(|k| !NOT_HASHED.contains(&k.as_str()))
        .collect();
    names.sort();
    h.update(b"{");
    for name in names {
        hash_str(&mut h, name);
        hash_value(&mut h, &fields[name]);
    }
    h.update(b"}");
    Some(h.finalize().into())
}

/// Hashes a JSON value in a canonical, unambiguous form: object keys sorted, every item
/// tagged with its kind and strings length-prefixed.
fn hash_value(h: &mut Sha256, value: &Value) {
    match value {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            hash_str(h, &n.to_string());
        }
        Value::String(s) => {
            h.update(b"s");
            hash_str(h, s);
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                hash_value(h, item);
            }
        }
        Value::Object(map) => {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            h.update(b"{");
            h.update((names.len() as u64).to_le_bytes());
            for name in names {
                hash_str(h, name);
                hash_value(h, &map[name]);
            }
        }
    }
}

fn hash_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: &str, body: &str) -> [u8; 32] {
        cache_key(&KeyParts {
            form: Form::Chat,
            scope,
            provider: "p",
            model: "m",
            body: body.as_bytes(),
        })
        .unwrap()
    }

    #[test]
    fn field_order_whitespace_and_delivery_fields_do_not_matter() {
        let a = key(
            "global",
            r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        );
        let b = key(
            "global",
            r#"{ "temperature": 0.5, "stream": true, "stream_options": {"include_usage": true},
                "messages": [ {"content": "hi", "role": "user"} ], "model": "y", "user": "u1" }"#,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn anything_that_changes_the_answer_changes_the_key() {
        let base = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let k = key("global", base);
        for other in [
            r#"{"messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"tools":[]}"#,
            r#"{"messages":[{"role":"system","content":"hi"}]}"#,
            r#"{"messages":[{"role":"user","content":["hi"]}]}"#,
        ] {
            assert_ne!(k, key("global", other), "{other}");
        }
        assert_ne!(k, key("key:a", base));
        assert_ne!(key("key:a", base), key("key:b", base));
        let other_model = cache_key(&KeyParts {
            form: Form::Chat,
            scope: "global",
            provider: "p",
            model: "m2",
            body: base.as_bytes(),
        });
        assert_ne!(Some(k), other_model);
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        let ab = cache_key(&KeyParts {
            form: Form::Chat,
            scope: "global",
            provider: "ab",
            model: "c",
            body: b"{}",
        });
        let a_bc = cache_key(&KeyParts {
            form: Form::Chat,
            scope: "global",
            provider: "a",
            model: "bc",
            body: b"{}",
        });
        assert_ne!(ab, a_bc);
        assert_ne!(
            key("global", r#"{"a":"bc"}"#),
            key("global", r#"{"ab":"c"}"#)
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_has_no_key() {
        for body in ["[1]", "nope", ""] {
            assert!(cache_key(&KeyParts {
                form: Form::Chat,
                scope: "global",
                provider: "p",
                model: "m",
                body: body.as_bytes(),
            })
            .is_none());
        }
    }
}
