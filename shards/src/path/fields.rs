//! Pass-through field extraction: reads only `model` and `stream` from a JSON request body and
//! remembers where the model string sits, so the body can be forwarded as the client sent it
//! with at most the model name spliced. The rest of the document is validated by serde_json
//! while it is skipped (malformed JSON is still a 400) but never built into a tree.
//!
//! Hot-path cost: one validating pass over the body, no allocation unless the model name
//! contains escapes.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
    /// Chat and Anthropic Messages.
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    /// Responses API.
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct RequestFields<'a> {
    pub model: Cow<'a, str>,
    /// Byte range of the model's JSON string literal (quotes included) within the body.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// The request sets `stream_options` (the gateway then leaves it alone).
    pub has_stream_options: bool,
    /// The output token cap the client asked for, under any of its names.
    pub max_tokens: Option<u64>,
}

/// Extracts `model` and `stream` from a request body.
pub fn extract_fields(body: &[u8]) -> Result<RequestFields<'_>, GatewayError> {
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() && body.first() != Some(&b'{') && !body.trim_ascii_start().starts_with(b"{")
        {
            GatewayError::MalformedJson("the body must be a JSON object".into())
        } else {
            GatewayError::MalformedJson(e.to_string())
        }
    })?;
    let raw = fields.model.ok_or(GatewayError::MissingModel)?;
    let literal = raw.get();
    let model = string_value(literal)
        .ok_or_else(|| GatewayError::InvalidRequest("`model` must be a string".into()))?;
    if model.is_empty() {
        return Err(GatewayError::MissingModel);
    }
    let start = literal.as_ptr() as usize - body.as_ptr() as usize;
    Ok(RequestFields {
        model,
        model_span: start..start + literal.len(),
        stream: fields.stream.unwrap_or(false),
        has_stream_options: fields.stream_options.is_some(),
        max_tokens: fields
            .max_completion_tokens
            .or(fields.max_tokens)
            .or(fields.max_output_tokens),
    })
}

/// The value of a JSON value's text when it is a string: borrowed from the text when it holds
/// no escape (serde reads a `Cow<str>` as an owned copy whatever it holds, one allocation per
/// request), unescaped otherwise.
fn string_value(literal: &str) -> Option<Cow<'_, str>> {
    match literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        // A string token without a backslash holds no escape, hence no quote and no control
        // character either (the body was validated as JSON): its inside is its value.
        Some(inside) if !inside.contains('\\') => Some(Cow::Borrowed(inside)),
        _ => serde_json::from_str::<String>(literal).ok().map(Cow::Owned),
    }
}

/// A request body forwarded as the client sent it, with the model string literal at `span`
/// replaced and, optionally, `insert` placed right after the opening brace. It is written
/// straight into the output buffer after the head: the body is copied once, and a model name
/// that needs no escapes is not copied before that (no allocation per request).
pub struct Spliced<'b> {
    pub body: &'b [u8],
    pub span: Range<usize>,
    replacement: Replacement<'b>,
    pub insert: &'b [u8],
}

/// What replaces a [`Spliced`] body's span.
enum Replacement<'b> {
    /// A model name that needs no escapes, written between quotes.
    Quoted(&'b str),
    /// Written as it is: a model's escaped JSON literal, or a form field's raw value.
    Verbatim(Cow<'b, str>),
}

impl Replacement<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Quoted(model) => model.len() + 2,
            Self::Verbatim(text) => text.len(),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Quoted(model) => {
                out.push(b'"');
                out.extend_from_slice(model.as_bytes());
                out.push(b'"');
            }
            Self::Verbatim(text) => out.extend_from_slice(text.as_bytes()),
        }
    }
}

impl<'b> Spliced<'b> {
    pub fn new(body: &'b [u8], span: Range<usize>, model: &'b str, insert: &'b [u8]) -> Self {
        let plain = !model.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let replacement = if plain {
            Replacement::Quoted(model)
        } else {
            let mut literal = Vec::with_capacity(model.len() + 8);
            crate::error::push_json_string(&mut literal, model);
            Replacement::Verbatim(Cow::Owned(String::from_utf8(literal).unwrap_or_default()))
        };
        Self {
            body,
            span,
            replacement,
            insert,
        }
    }

    /// `body` with the raw bytes at `span` (a form field's value) replaced by `value`.
    pub fn raw(body: &'b [u8], span: Range<usize>, value: &'b str) -> Self {
        Self {
            body,
            span,
            replacement: Replacement::Verbatim(Cow::Borrowed(value)),
            insert: b"",
        }
    }

    pub fn len(&self) -> usize {
        self.body.len() - self.span.len() + self.replacement.len() + self.insert.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        let open = if self.insert.is_empty() {
            0
        } else {
            memchr::memchr(b'{', self.body).map_or(0, |i| i + 1)
        };
        out.extend_from_slice(&self.body[..open]);
        out.extend_from_slice(self.insert);
        out.extend_from_slice(&self.body[open..self.span.start]);
        self.replacement.write_to(out);
        out.extend_from_slice(&self.body[self.span.end..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_model_and_stream() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\""}], "model" : "openai/gpt-4o", "stream":true}"#;
        let f = extract_fields(body).unwrap();
        assert_eq!(f.model, "openai/gpt-4o");
        assert!(
            matches!(f.model, Cow::Borrowed(_)),
            "no copy of a model without escapes"
        );
        assert!(f.stream);
        assert_eq!(&body[f.model_span.clone()], br#""openai/gpt-4o""#);
        let mut out = Vec::new();
        let spliced = Spliced::new(body, f.model_span, "gpt-4o", b"");
        spliced.write_to(&mut out);
        assert_eq!(out.len(), spliced.len());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["messages"][0]["content"], "hi \"model\"");
        // A name that needs escapes is escaped; a usage request goes after the brace.
        let model = "we\"ird\\name\u{1}é";
        let f = extract_fields(body).unwrap();
        let spliced = Spliced::new(body, f.model_span, model, br#""x":1,"#);
        out.clear();
        spliced.write_to(&mut out);
        assert_eq!(out.len(), spliced.len());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], model);
        assert_eq!(v["x"], 1);
    }

    #[test]
    fn escaped_model_is_unescaped() {
        let f = extract_fields(br#"{"model":"a\/b"}"#).unwrap();
        assert_eq!(f.model, "a/b");
        let f = extract_fields(br#"{"model":"\"q\"\u00e9\\"}"#).unwrap();
        assert_eq!(f.model, "\"q\"é\\");
        assert!(!f.stream);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            extract_fields(b"{\"model\":"),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(
            extract_fields(b"[1,2]"),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(
            extract_fields(b"{}"),
            Err(GatewayError::MissingModel)
        ));
        assert!(matches!(
            extract_fields(br#"{"model":""}"#),
            Err(GatewayError::MissingModel)
        ));
        assert!(matches!(
            extract_fields(br#"{"model":3}"#),
            Err(GatewayError::InvalidRequest(_))
        ));
        assert!(matches!(
            extract_fields(br#"{"model":"m","stream":"yes"}"#),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(
            extract_fields(b""),
            Err(GatewayError::MalformedJson(_))
        ));
    }
}
