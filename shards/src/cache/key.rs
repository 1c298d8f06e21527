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

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The keys' versions: bumped when the normalization changes, so that entries a fleet's
/// older nodes wrote are not mistaken for new ones.
const EXACT: &[u8] = b"ringgate-cache-v1";
const SEMANTIC: &[u8] = b"ringgate-semantic-v1";

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
    let fields = object_of(parts.body)?;
    Some(hash_request(EXACT, parts, &fields))
}

/// A chat request's place in the semantic cache: the text of its last user turn, and the
/// partition it is compared within — the hash of everything else, as the exact key hashes
/// it (scope, target, earlier messages, every parameter), with the last user turn's content
/// left out. `None` when the request has no last user turn that is text alone (an image or
/// audio in it would be ignored by a text embedding, so the answer could be wrong).
pub fn semantic_key(parts: &KeyParts<'_>) -> Option<([u8; 32], String)> {
    let mut fields = object_of(parts.body)?;
    let messages = fields.get_mut("messages")?.as_array_mut()?;
    let last_user = messages
        .iter_mut()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let content = last_user.get_mut("content")?;
    let text = text_of(content)?;
    *content = Value::Null;
    Some((hash_request(SEMANTIC, parts, &fields), text))
}

fn object_of(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(fields) => Some(fields),
        _ => None,
    }
}

/// A message content's text: a string, or text parts joined by newlines (nothing else).
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect::<Option<Vec<&str>>>()
            .map(|texts| texts.join("\n")),
        _ => None,
    }
    .filter(|t| !t.trim().is_empty())
}

fn hash_request(version: &[u8], parts: &KeyParts<'_>, fields: &Map<String, Value>) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        version,
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
    h.finalize().into()
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

    fn semantic(scope: &str, body: &str) -> Option<([u8; 32], String)> {
        semantic_key(&KeyParts {
            form: Form::Chat,
            scope,
            provider: "p",
            model: "m",
            body: body.as_bytes(),
        })
    }

    #[test]
    fn the_partition_is_everything_but_the_last_user_turn() {
        let (p1, text) = semantic(
            "global",
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"capital of France?"}],"temperature":0}"#,
        )
        .unwrap();
        assert_eq!(text, "capital of France?");
        let (p2, _) = semantic(
            "global",
            r#"{"temperature":0,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"France's capital?"}]}]}"#,
        )
        .unwrap();
        assert_eq!(p1, p2);
        for other in [
            r#"{"messages":[{"role":"system","content":"be long"},{"role":"user","content":"x"}],"temperature":0}"#,
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"x"}],"temperature":1}"#,
        ] {
            assert_ne!(p1, semantic("global", other).unwrap().0, "{other}");
        }
        let scoped = r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"x"}],"temperature":0}"#;
        assert_ne!(p1, semantic("key:a", scoped).unwrap().0);
        // Never the exact key of the same request.
        assert_ne!(p1, key("global", scoped));
    }

    #[test]
    fn only_a_text_last_user_turn_has_a_semantic_key() {
        for body in [
            r#"{"messages":[{"role":"system","content":"hi"}]}"#,
            r#"{"messages":[{"role":"user","content":"  "}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:"}}]}]}"#,
            r#"{"prompt":"hi"}"#,
        ] {
            assert!(semantic("global", body).is_none(), "{body}");
        }
        let (_, text) = semantic(
            "global",
            r#"{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"a"},{"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]}]}"#,
        )
        .unwrap();
        assert_eq!(text, "one\ntwo");
    }
}
