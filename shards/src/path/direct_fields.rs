//! What the extract phase reads from a request of a relayed API ([`crate::direct`]): its
//! model (and where it sits, to splice), and what its charge depends on — a speech
//! request's characters, an image request's size and quality. A batch file uploaded by a key
//! restricted to some models is read line by line for the models it will call.
//! JSON bodies are validated without building a tree; forms are read in place.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::direct::{BodyKind, DirectApi};
use crate::error::GatewayError;
use crate::http::multipart;

/// Where the request's model name sits in its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ModelAt {
    /// A JSON string literal (quotes included).
    #[default]
    Json,
    /// A form field's raw value.
    Form,
    /// Nowhere: the request names none (the API's default applies).
    Absent,
}

/// A relayed request's fields.
#[derive(Debug, Default)]
pub struct DirectFields {
    /// The model named, or the API's default.
    pub model: Option<String>,
    pub model_span: Range<usize>,
    pub model_at: ModelAt,
    /// Speech: the characters of `input`.
    pub characters: u64,
    /// Images: the price tier, `quality/size` or `size`.
    pub image_tier: Option<String>,
    /// A batch file upload by a key restricted to some models: the models its lines call
    /// (each once; [`batch_file_models`]).
    pub batch_models: Vec<String>,
    /// A transcription or translation asked as `response_format=text`: where that value
    /// sits. Plain text states no duration to charge by, so the provider is asked for `json`
    /// (which does) and the client answered with its `text` ([`TEXT_FORMAT`]).
    pub text_format_span: Option<Range<usize>>,
}

/// The response format a transcription is asked for instead of `text`.
pub const TEXT_FORMAT: &str = "json";

#[derive(Deserialize)]
struct JsonFields<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    quality: Option<String>,
}

/// Reads a relayed request; `content_type` is the request's header.
pub fn read(
    api: DirectApi,
    kind: BodyKind,
    body: &[u8],
    content_type: Option<&[u8]>,
) -> Result<DirectFields, GatewayError> {
    let mut fields = match kind {
        BodyKind::Empty => DirectFields::default(),
        // A batch's cancel is a POST without a body; there is nothing to read in it.
        BodyKind::Json if body.is_empty() && !api.names_model() => DirectFields::default(),
        BodyKind::Json => json(api, body)?,
        BodyKind::Multipart => form(api, body, content_type)?,
    };
    if fields.model.is_none() && api.names_model() {
        let default = api.default_model().ok_or(GatewayError::MissingModel)?;
        fields.model = Some(default.to_owned());
        fields.model_at = ModelAt::Absent;
    }
    Ok(fields)
}

fn json(api: DirectApi, body: &[u8]) -> Result<DirectFields, GatewayError> {
    // serde would also read a struct from an array: only an object is a request.
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(GatewayError::MalformedJson(
            "the body must be a JSON object".into(),
        ));
    }
    let parsed: JsonFields<'_> =
        serde_json::from_slice(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let mut fields = DirectFields {
        image_tier: tier(parsed.quality.as_deref(), parsed.size.as_deref()),
        ..DirectFields::default()
    };
    if let (Some(raw), true) = (parsed.model, api.names_model()) {
        let literal = raw.get();
        let model: String = serde_json::from_str(literal)
            .map_err(|_| GatewayError::InvalidRequest("`model` must be a string".into()))?;
        let start = literal.as_ptr() as usize - body.as_ptr() as usize;
        fields.model_span = start..start + literal.len();
        fields.model = Some(model).filter(|m| !m.is_empty());
    }
    if api == DirectApi::Speech {
        let input: String = parsed
            .input
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .ok_or_else(|| GatewayError::InvalidRequest("`input` must be a string".into()))?;
        fields.characters = input.chars().count() as u64;
    }
    Ok(fields)
}

fn form(
    api: DirectApi,
    body: &[u8],
    content_type: Option<&[u8]>,
) -> Result<DirectFields, GatewayError> {
    let boundary = content_type.and_then(multipart::boundary).ok_or_else(|| {
        GatewayError::InvalidRequest(format!(
            "{} takes a multipart/form-data body with a boundary",
            api.name()
        ))
    })?;
    let form =
        multipart::parse(body, boundary).map_err(|e| GatewayError::InvalidRequest(e.to_owned()))?;
    let mut fields = DirectFields {
        image_tier: tier(form.text(body, "quality"), form.text(body, "size")),
        ..DirectFields::default()
    };
    if let (Some((part, value)), true) = (form.field(body, "model"), api.names_model()) {
        let model = std::str::from_utf8(value)
            .map_err(|_| GatewayError::InvalidRequest("`model` must be UTF-8 text".into()))?;
        fields.model = Some(model.trim().to_owned()).filter(|m| !m.is_empty());
        fields.model_span = part.value.clone();
        fields.model_at = ModelAt::Form;
    }
    let transcript = matches!(api, DirectApi::Transcriptions | DirectApi::Translations);
    // A streamed transcription (`stream=true`) is left as it is.
    if transcript && form.text(body, "stream").is_none_or(|s| s.trim() != "true") {
        fields.text_format_span = form
            .field(body, "response_format")
            .filter(|(_, value)| value.trim_ascii() == b"text")
            .map(|(part, _)| part.value.clone());
    }
    Ok(fields)
}

/// The models the batch file of an upload (`purpose=batch`) will call, each once; empty for
/// any other upload. Read only for a key restricted to some models: a batch file may be as
/// large as a request body, and reading every line costs the shard milliseconds.
pub fn batch_file_models(
    body: &[u8],
    content_type: Option<&[u8]>,
) -> Result<Vec<String>, GatewayError> {
    let Some(boundary) = content_type.and_then(multipart::boundary) else {
        return Ok(Vec::new()); // `read` has refused such a form already
    };
    let form =
        multipart::parse(body, boundary).map_err(|e| GatewayError::InvalidRequest(e.to_owned()))?;
    if form.text(body, "purpose") != Some("batch") {
        return Ok(Vec::new());
    }
    let (_, file) = form
        .field(body, "file")
        .ok_or_else(|| GatewayError::InvalidRequest("a file upload needs `file`".into()))?;
    batch_models(file)
}

/// The price tier of an image request: `quality/size`, or `size` alone.
fn tier(quality: Option<&str>, size: Option<&str>) -> Option<String> {
    match (quality, size) {
        (Some(q), Some(s)) => Some(format!("{q}/{s}")),
        (None, Some(s)) => Some(s.to_owned()),
        (Some(q), None) => Some(q.to_owned()),
        (None, None) => None,
    }
}

#[derive(Deserialize)]
struct BatchLine {
    body: BatchBody,
}

#[derive(Deserialize)]
struct BatchBody {
    model: String,
}

/// The models a batch input file's lines call, each once, in the order first seen.
fn batch_models(file: &[u8]) -> Result<Vec<String>, GatewayError> {
    let mut models: Vec<String> = Vec::new();
    for (n, line) in file.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let parsed: BatchLine = serde_json::from_slice(line).map_err(|e| {
            GatewayError::InvalidRequest(format!(
                "line {} of the batch file is not a batch request: {e}",
                n + 1
            ))
        })?;
        if !models.contains(&parsed.body.model) {
            models.push(parsed.body.model);
        }
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    fn read_json(api: DirectApi, body: &[u8]) -> Result<DirectFields, GatewayError> {
        read(api, api.body(Method::Post), body, None)
    }

    #[test]
    fn speech_counts_characters() {
        let body = br#"{"model":"openai/tts-1","input":"h\u00e9llo","voice":"alloy"}"#;
        let f = read_json(DirectApi::Speech, body).unwrap();
        assert_eq!(f.model.as_deref(), Some("openai/tts-1"));
        assert_eq!(&body[f.model_span.clone()], br#""openai/tts-1""#);
        assert_eq!(f.characters, 5);
        assert!(read_json(DirectApi::Speech, br#"{"model":"m"}"#).is_err());
    }

    #[test]
    fn defaults_and_tiers() {
        let f = read_json(DirectApi::Moderations, br#"{"input":"hi"}"#).unwrap();
        assert_eq!(f.model.as_deref(), Some("omni-moderation-latest"));
        assert_eq!(f.model_at, ModelAt::Absent);
        let f = read_json(
            DirectApi::ImageGenerations,
            br#"{"prompt":"a cat","size":"1024x1024","quality":"hd"}"#,
        )
        .unwrap();
        assert_eq!(f.image_tier.as_deref(), Some("hd/1024x1024"));
        assert!(matches!(
            read_json(DirectApi::Speech, br#"{"input":"x"}"#),
            Err(GatewayError::MissingModel)
        ));
        assert!(matches!(
            read_json(DirectApi::Moderations, b"[1]"),
            Err(GatewayError::MalformedJson(_))
        ));
        // POST /v1/batches/{id}/cancel has no body; a model-named API's empty body is wrong.
        assert!(read_json(DirectApi::Batches, b"").is_ok());
        assert!(matches!(
            read_json(DirectApi::Moderations, b""),
            Err(GatewayError::MalformedJson(_))
        ));
    }

    #[test]
    fn a_transcript_asked_as_text_is_marked_unless_streamed() {
        let form = |fields: &[(&str, &str)]| {
            let mut body = Vec::new();
            for (name, value) in fields {
                body.extend_from_slice(
                    format!(
                        "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                    )
                    .as_bytes(),
                );
            }
            body.extend_from_slice(b"--b--\r\n");
            body
        };
        let read_form = |body: &[u8]| {
            read(
                DirectApi::Transcriptions,
                BodyKind::Multipart,
                body,
                Some(b"multipart/form-data; boundary=b"),
            )
            .unwrap()
        };
        let text = form(&[("model", "whisper-1"), ("response_format", "text")]);
        let span = read_form(&text).text_format_span.expect("marked");
        assert_eq!(&text[span], b"text");
        let streamed = form(&[
            ("model", "m"),
            ("response_format", "text"),
            ("stream", "true"),
        ]);
        assert_eq!(read_form(&streamed).text_format_span, None);
        let json = form(&[("model", "m"), ("response_format", "json")]);
        assert_eq!(read_form(&json).text_format_span, None);
    }

    #[test]
    fn forms_and_batch_files() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b--\r\n";
        let f = read(
            DirectApi::Transcriptions,
            BodyKind::Multipart,
            body,
            Some(b"multipart/form-data; boundary=b"),
        )
        .unwrap();
        assert_eq!(f.model.as_deref(), Some("whisper-1"));
        assert_eq!(&body[f.model_span.clone()], b"whisper-1");
        assert_eq!(f.model_at, ModelAt::Form);
        assert!(read(DirectApi::Transcriptions, BodyKind::Multipart, body, None).is_err());

        let upload = b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n{\"custom_id\":\"1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-4o\"}}\n{\"custom_id\":\"2\",\"body\":{\"model\":\"gpt-4o\"}}\n{\"custom_id\":\"3\",\"body\":{\"model\":\"o4-mini\"}}\n\r\n--b--\r\n";
        let content_type = Some(&b"multipart/form-data; boundary=b"[..]);
        let f = read(DirectApi::Files, BodyKind::Multipart, upload, content_type).unwrap();
        assert!(f.model.is_none());
        assert_eq!(
            batch_file_models(upload, content_type).unwrap(),
            ["gpt-4o", "o4-mini"]
        );
        assert!(batch_file_models(body, content_type).unwrap().is_empty());
    }
}
