//! OpenAI embeddings through Bedrock `InvokeModel` (`POST /model/{id}/invoke`), for the two
//! embedding families Bedrock hosts with a text API:
//!
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, also v1 and
//!   `amazon.titan-embed-g1-text-02`): `{"inputText", "dimensions", "normalize"}` →
//!   `{"embedding", "inputTextTokenCount"}`. One input per call: several inputs are rejected
//!   with a 400 rather than fanned out into several upstream calls.
//! - Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`):
//!   `{"texts", "input_type": "search_document", "truncate": "NONE"}` →
//!   `{"embeddings": [[..]], "id", "response_type": "embeddings_floats", "texts"}`.
//!
//! The family is read from the model id (which may carry an inference-profile prefix or be a
//! foundation-model ARN); other models are rejected. Token-array inputs are rejected (neither
//! family accepts tokens). The response translator tells the families apart by the body's
//! shape, so it needs no state beyond the base64 flag.

use super::sigv4;
use crate::error::{Result, TranslateError};
use crate::openai;
use crate::ProviderRequest;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The message for an OpenAI request with several inputs to a Titan model.
pub const TITAN_ONE_INPUT: &str =
    "Titan embeds one input per request; send inputs separately or use a Cohere model";

/// `input_type` sent to Cohere Embed v3, which requires one. OpenAI requests have no
/// equivalent, so the indexing-side value is used (queries embedded this way still work,
/// slightly less well than with `search_query`).
const COHERE_INPUT_TYPE: &str = "search_document";

/// The Bedrock embedding families the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Titan Text Embeddings v2: takes `dimensions` and `normalize`.
    TitanV2,
    /// Titan Text Embeddings v1 / G1: `inputText` only.
    TitanV1,
    Cohere,
}

fn family(model_id: &str) -> Result<Family> {
    if model_id.contains("amazon.titan-embed-text-v2") {
        Ok(Family::TitanV2)
    } else if model_id.contains("amazon.titan-embed-text")
        || model_id.contains("amazon.titan-embed-g1-text")
    {
        Ok(Family::TitanV1)
    } else if model_id.contains("cohere.embed") {
        Ok(Family::Cohere)
    } else {
        Err(TranslateError::invalid(format!(
            "Bedrock embeddings support Amazon Titan Text Embeddings (amazon.titan-embed-text-*) \
             and Cohere Embed (cohere.embed-*) models, not {model_id:?}"
        )))
    }
}

/// The `InvokeModel` path for a model id (percent-encoded like [`super::model_path`]).
pub fn invoke_path(model_id: &str) -> String {
    let mut p = String::from("/model/");
    sigv4::uri_encode(model_id.as_bytes(), &mut p);
    p.push_str("/invoke");
    p
}

/// OpenAI embeddings request → Bedrock `InvokeModel` body for Titan or Cohere (picked from
/// `model_id`). Returns the request and whether the client asked for
/// `encoding_format: "base64"` (pass it to [`embed_response`]).
///
/// Errors (all `InvalidRequest`): a model that is neither family; token-array or empty input;
/// several inputs for Titan ([`TITAN_ONE_INPUT`]); `dimensions` for a model that has no such
/// setting (Titan v1, Cohere v3); an unknown `encoding_format`.
pub fn embed_request(openai_body: &[u8], model_id: &str) -> Result<(ProviderRequest, bool)> {
    let req = openai::parse_request(openai_body)?;
    let family = family(model_id)?;
    let inputs = openai::embedding_inputs(&req)?;
    if inputs.is_empty() {
        return Err(TranslateError::invalid("input must not be empty"));
    }
    let base64 = openai::embedding_base64(&req)?;
    let dims = req.get("dimensions").filter(|v| !v.is_null());
    let mut body = Map::new();
    match family {
        Family::TitanV2 | Family::TitanV1 => {
            let [text] = inputs[..] else {
                return Err(TranslateError::invalid(TITAN_ONE_INPUT));
            };
            body.insert("inputText".into(), text.into());
            if family == Family::TitanV2 {
                if let Some(d) = dims {
                    body.insert("dimensions".into(), d.clone());
                }
                body.insert("normalize".into(), true.into());
            } else if dims.is_some() {
                return Err(TranslateError::invalid(
                    "dimensions is only supported by Titan Text Embeddings v2 on Bedrock",
                ));
            }
        }
        Family::Cohere => {
            if dims.is_some() {
                return Err(TranslateError::invalid(
                    "dimensions is not supported by Cohere Embed on Bedrock",
                ));
            }
            body.insert("texts".into(), json!(inputs));
            body.insert("input_type".into(), COHERE_INPUT_TYPE.into());
            body.insert("truncate".into(), "NONE".into());
        }
    }
    Ok((
        ProviderRequest {
            path: invoke_path(model_id),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
            ],
            body: openai::to_body(&Value::Object(body)),
        },
        base64,
    ))
}

/// Titan: `{"embedding": [..], "inputTextTokenCount": n}`. Cohere: `{"embeddings": [[..]] |
/// {"float": [[..]]}, "texts": [..]}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resp {
    #[serde(default)]
    embedding: Option<Vec<f32>>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
    #[serde(default)]
    embeddings: Option<CohereEmbeddings>,
    #[serde(default)]
    texts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    /// `response_type: "embeddings_floats"` (no `embedding_types` asked, as the gateway sends).
    Floats(Vec<Vec<f32>>),
    /// `response_type: "embeddings_by_type"`.
    ByType { float: Vec<Vec<f32>> },
}

/// Bedrock Titan or Cohere embeddings response → OpenAI embeddings list (`model` is the
/// client's model name). With `base64`, each vector is little-endian f32 bytes, base64
/// encoded (what OpenAI SDKs request by default).
///
/// Usage: Titan's `inputTextTokenCount`. Cohere on Bedrock reports no token counts, so
/// `prompt_tokens` is an estimate: the sum over the echoed `texts` of ceil(chars / 4), the
/// rule of thumb Cohere's Bedrock documentation gives (0 when the response omits `texts`).
pub fn embed_response(body: &[u8], model: &str, base64: bool) -> Result<Vec<u8>> {
    let r: Resp = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream(format!("bad Bedrock embeddings response: {e}")))?;
    let (vectors, tokens) = match (r.embedding, r.embeddings) {
        (Some(v), _) => (vec![v], r.input_text_token_count.unwrap_or(0)),
        (None, Some(CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v })) => {
            let tokens = r
                .texts
                .iter()
                .map(|t| t.chars().count().div_ceil(4) as u64)
                .sum();
            (v, tokens)
        }
        (None, None) => {
            return Err(TranslateError::upstream(
                "Bedrock embeddings response has neither `embedding` nor `embeddings`",
            ))
        }
    };
    Ok(openai::embeddings_body(&vectors, model, base64, tokens))
}
