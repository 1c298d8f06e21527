//! `POST /v1/embeddings`: deterministic vectors from the input text, as floats or base64.

use super::*;

#[derive(Serialize)]
pub(super) struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub(super) struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
pub(super) struct EmbeddingUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}

// ---- handlers ----

/// `POST /v1/embeddings`.
pub fn embeddings(body: &[u8], deployment: Option<&str>) -> Result<Output, String> {
    let req: EmbeddingRequest = parse(body)?;
    let model = resolve_model(deployment, req.model)?;
    let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dims) {
        return Err(format!("dimensions must be between 1 and {MAX_DIMENSIONS}"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("unsupported encoding_format {other:?}")),
    };
    let inputs = embedding_inputs(&req.input)?;
    let mut tokens = 0;
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            tokens += input.tokens;
            let vector = embedding_vector(&input.text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                EmbeddingValue::Base64(base64_encode(&bytes))
            } else {
                EmbeddingValue::Floats(vector)
            };
            EmbeddingItem {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    Ok(Output::Json(to_bytes(&EmbeddingList {
        object: "list",
        data,
        model: &model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })))
}

// ---- pure helpers ----

pub(super) struct EmbeddingInput {
    /// What the vector is derived from.
    text: String,
    tokens: usize,
}

/// `input` is a string, an array of strings, a token array, or an array of
/// token arrays; each token array counts as one item.
pub(super) fn embedding_inputs(input: &Value) -> Result<Vec<EmbeddingInput>, String> {
    let text_item = |s: &str| EmbeddingInput {
        text: s.to_owned(),
        tokens: prompt_tokens(s.chars().count()),
    };
    let tokens_item = |items: &[Value]| -> Option<EmbeddingInput> {
        items.iter().all(Value::is_u64).then(|| EmbeddingInput {
            text: Value::Array(items.to_vec()).to_string(),
            tokens: items.len(),
        })
    };
    let invalid = || "input must be a string, an array of strings, or token arrays".to_owned();
    match input {
        Value::String(s) => Ok(vec![text_item(s)]),
        Value::Array(items) if items.is_empty() => Err("input must not be empty".to_owned()),
        Value::Array(items) if items[0].is_number() => {
            tokens_item(items).map(|i| vec![i]).ok_or_else(invalid)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(text_item(s)),
                Value::Array(tokens) => tokens_item(tokens).ok_or_else(invalid),
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}

/// Standard base64 with padding (what the OpenAI SDKs decode).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
