//! Google Gemini API dialect (`/v1beta/models/{model}:{method}`):
//! `generateContent`, `streamGenerateContent` (SSE with `alt=sse`, else a
//! streamed JSON array), `embedContent`, `batchEmbedContents`, and Google's
//! error shape.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::reply::{
    embedding_vector, next_id, split_text, to_bytes, Output, Reply, StreamOutput, Tools,
    Transcript, TOOL_INPUT,
};
use crate::wire::sse_data_crlf;

/// Embedding length when the request gives no `outputDimensionality`
/// (the same default as the OpenAI mode, so vectors match).
const DEFAULT_DIMENSIONS: usize = 16;
const MAX_DIMENSIONS: usize = 65_536;

/// The `{method}` after the colon in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    /// `streamGenerateContent`; `sse` when the query has `alt=sse`.
    Stream {
        sse: bool,
    },
    Embed,
    BatchEmbed,
}

impl Method {
    pub fn parse(name: &str, sse: bool) -> Option<Self> {
        Some(match name {
            "generateContent" => Method::Generate,
            "streamGenerateContent" => Method::Stream { sse },
            "embedContent" => Method::Embed,
            "batchEmbedContents" => Method::BatchEmbed,
            _ => return None,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    contents: Vec<Content>,
    #[serde(default)]
    system_instruction: Option<Content>,
    #[serde(default)]
    tools: Vec<Tool>,
}

#[derive(Deserialize, Default)]
struct Content {
    /// `user` (also the default) or `model`; old clients send `function`
    /// for function responses.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Value>,
}

impl Content {
    /// Concatenated text parts (function responses as their JSON), and
    /// whether the content returns function results.
    fn text(&self) -> (String, bool) {
        let mut text = String::new();
        let mut function_response = false;
        for part in &self.parts {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
            } else if let Some(r) = part.get("functionResponse") {
                function_response = true;
                text.push_str(&r.get("response").unwrap_or(&Value::Null).to_string());
            }
        }
        (text, function_response)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tool {
    #[serde(default)]
    function_declarations: Vec<FunctionDeclaration>,
}

#[derive(Deserialize)]
struct FunctionDeclaration {
    #[serde(default)]
    name: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))
}

/// `generateContent` and `streamGenerateContent`.
pub fn generate(
    body: &[u8],
    model: &str,
    method: Method,
    stream_chunks: usize,
    forced_tool: Option<&str>,
) -> Result<Output, String> {
    let req: Request = parse(body)?;
    if req.contents.is_empty() {
        return Err("* GenerateContentRequest.contents: contents is not specified".to_owned());
    }
    let mut transcript = Transcript::default();
    if let Some(system) = &req.system_instruction {
        transcript.system(&system.text().0);
    }
    for content in &req.contents {
        let (text, function_response) = content.text();
        let from_user = content.role.as_deref() != Some("model");
        transcript.message(from_user, text, function_response);
    }
    let declarations = req.tools.iter().flat_map(|t| &t.function_declarations);
    let tools = Tools {
        offered: !req.tools.is_empty(),
        first_name: declarations.clone().find_map(|d| d.name.as_deref()),
    };
    let reply = Reply::new(&transcript, tools, forced_tool);
    // A function call comes alone, without the text preamble.
    let output_tokens = match reply.tool {
        Some(_) => reply.tool_tokens(),
        None => reply.text_tokens(),
    };
    let usage = json!({
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": reply.input_tokens + output_tokens,
    });
    let response_id = format!("mock-{}", next_id());
    let response = |parts: Value, last: bool| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut response =
            json!({"candidates": [], "modelVersion": model, "responseId": response_id});
        if last {
            candidate["finishReason"] = json!("STOP");
            response["usageMetadata"] = usage.clone();
        }
        response["candidates"] = json!([candidate]);
        response
    };
    let tool_parts = || {
        let args: Value = serde_json::from_str(TOOL_INPUT).unwrap_or(Value::Null);
        json!([{"functionCall": {"name": reply.tool, "args": args}}])
    };

    let sse = match method {
        Method::Stream { sse } => sse,
        _ => {
            let parts = match reply.tool {
                Some(_) => tool_parts(),
                None => json!([{"text": reply.text}]),
            };
            return Ok(Output::Json(to_bytes(&response(parts, true))));
        }
    };
    let chunks: Vec<Value> = match reply.tool {
        // Gemini streams a function call whole, in one chunk.
        Some(_) => vec![response(tool_parts(), true)],
        None => {
            let pieces = split_text(&reply.text, stream_chunks);
            let n = pieces.len();
            pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| response(json!([{"text": piece}]), i + 1 == n))
                .collect()
        }
    };
    let n = chunks.len();
    Ok(Output::Stream(if sse {
        StreamOutput {
            events: chunks.iter().map(sse_data_crlf).collect(),
            content: 0..n,
            content_type: "text/event-stream",
            bad_event: Bytes::from_static(b"data: {not json\r\n\r\n"),
            crc_framed: false,
        }
    } else {
        // Without alt=sse the body is one JSON array, sent element by element.
        let mut events: Vec<Bytes> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut buf = Vec::from(if i == 0 { &b"["[..] } else { &b",\r\n"[..] });
                let _ = serde_json::to_writer(&mut buf, chunk);
                Bytes::from(buf)
            })
            .collect();
        events.push(Bytes::from_static(b"]"));
        StreamOutput {
            events,
            content: 0..n,
            content_type: "application/json",
            bad_event: Bytes::from_static(b",\r\n{not json"),
            crc_framed: false,
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest {
    #[serde(default)]
    content: Content,
    #[serde(default)]
    output_dimensionality: Option<usize>,
}

#[derive(Deserialize)]
struct BatchEmbedRequest {
    requests: Vec<EmbedRequest>,
}

/// `ContentEmbedding`; a struct rather than a `Value` so the floats are
/// written as f32, exactly like the OpenAI mode's.
#[derive(Serialize)]
struct Embedding {
    values: Vec<f32>,
}

fn embedding(req: &EmbedRequest) -> Result<Embedding, String> {
    let dims = req.output_dimensionality.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dims) {
        return Err(format!(
            "outputDimensionality must be between 1 and {MAX_DIMENSIONS}"
        ));
    }
    let text = req.content.text().0;
    Ok(Embedding {
        values: embedding_vector(&text, dims),
    })
}

/// `embedContent` and `batchEmbedContents`: the same vectors the OpenAI mode
/// gives for the same text and dimensions.
pub fn embed(body: &[u8], method: Method) -> Result<Output, String> {
    #[derive(Serialize)]
    struct Batch {
        embeddings: Vec<Embedding>,
    }
    #[derive(Serialize)]
    struct Single {
        embedding: Embedding,
    }
    Ok(Output::Json(if method == Method::BatchEmbed {
        let req: BatchEmbedRequest = parse(body)?;
        if req.requests.is_empty() {
            return Err(
                "* BatchEmbedContentsRequest.requests: requests is not specified".to_owned(),
            );
        }
        let embeddings = req
            .requests
            .iter()
            .map(embedding)
            .collect::<Result<Vec<_>, _>>()?;
        to_bytes(&Batch { embeddings })
    } else {
        to_bytes(&Single {
            embedding: embedding(&parse(body)?)?,
        })
    }))
}

/// Google RPC status name for an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// `{"error":{"code":..,"message":..,"status":..}}`.
pub fn error_body(status: u16, message: &str) -> Bytes {
    to_bytes(&json!({
        "error": {"code": status, "message": message, "status": status_name(status)}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::json;

    const BODY: &[u8] = br#"{
        "systemInstruction":{"parts":[{"text":"be brief"}]},
        "contents":[{"role":"user","parts":[{"text":"first"}]},
                    {"role":"model","parts":[{"text":"ok"}]},
                    {"parts":[{"inlineData":{"mimeType":"image/png","data":""}},{"text":"hello world"}]}],
        "generationConfig":{"temperature":0}}"#;

    #[test]
    fn generate_content() {
        let out = generate(BODY, "gemini-x", Method::Generate, 8, None)
            .unwrap()
            .into_json();
        let v = json(&out);
        let c = &v["candidates"][0];
        assert_eq!(
            c["content"],
            serde_json::json!({"role":"model","parts":[{"text":"echo: hello world"}]})
        );
        assert_eq!(c["finishReason"], "STOP");
        assert_eq!(c["index"], 0);
        assert_eq!(
            v["usageMetadata"],
            serde_json::json!({"promptTokenCount":7,"candidatesTokenCount":3,"totalTokenCount":10})
        );
        assert_eq!(v["modelVersion"], "gemini-x");
    }

    #[test]
    fn function_call() {
        let body = br#"{"contents":[{"role":"user","parts":[{"text":"weather?"}]}],
            "tools":[{"functionDeclarations":[{"name":"get_weather","parameters":{}}]}]}"#;
        let out = generate(body, "g", Method::Generate, 8, None)
            .unwrap()
            .into_json();
        let v = json(&out);
        assert_eq!(
            v["candidates"][0]["content"]["parts"],
            serde_json::json!([{"functionCall":{"name":"get_weather","args":{"location":"Paris"}}}])
        );
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");

        // The function response is answered with an echo.
        let body = br#"{"contents":[{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"weather":"sunny"}}}]}],
            "tools":[{"functionDeclarations":[{"name":"get_weather"}]}]}"#;
        let out = generate(body, "g", Method::Generate, 8, None)
            .unwrap()
            .into_json();
        let v = json(&out);
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            r#"echo: {"weather":"sunny"}"#
        );
    }

    #[test]
    fn stream_sse() {
        let out = generate(BODY, "g", Method::Stream { sse: true }, 4, None)
            .unwrap()
            .into_stream();
        assert_eq!(out.content, 0..4);
        let chunks: Vec<Value> = out
            .events
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                json(
                    s.strip_prefix("data: ")
                        .unwrap()
                        .strip_suffix("\r\n\r\n")
                        .unwrap()
                        .as_bytes(),
                )
            })
            .collect();
        let text: String = chunks
            .iter()
            .map(|c| {
                c["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(text, "echo: hello world");
        assert!(chunks[..3].iter().all(|c| c.get("usageMetadata").is_none()
            && c["candidates"][0].get("finishReason").is_none()));
        assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(chunks[3]["usageMetadata"]["totalTokenCount"], 10);
    }

    #[test]
    fn stream_json_array() {
        let out = generate(BODY, "g", Method::Stream { sse: false }, 3, None)
            .unwrap()
            .into_stream();
        let body: Vec<u8> = out.events.concat();
        let v = json(&body);
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert_eq!(out.content_type, "application/json");
    }

    #[test]
    fn embeddings_match_openai_vectors() {
        let body = br#"{"requests":[{"model":"models/e","content":{"parts":[{"text":"a"}]}},
            {"model":"models/e","content":{"parts":[{"text":"b"}]},"outputDimensionality":4}]}"#;
        let out = embed(body, Method::BatchEmbed).unwrap().into_json();
        let v = json(&out);
        // Same bytes as the OpenAI mode writes for the same vector.
        let expected_a = serde_json::to_string(&embedding_vector("a", DEFAULT_DIMENSIONS)).unwrap();
        assert_eq!(v["embeddings"][0]["values"].to_string(), expected_a);
        assert_eq!(v["embeddings"][1]["values"].as_array().unwrap().len(), 4);

        let out = embed(br#"{"content":{"parts":[{"text":"a"}]}}"#, Method::Embed)
            .unwrap()
            .into_json();
        assert_eq!(json(&out)["embedding"]["values"].to_string(), expected_a);
        assert!(embed(br#"{"requests":[]}"#, Method::BatchEmbed).is_err());
    }

    #[test]
    fn errors() {
        assert!(generate(b"{}", "g", Method::Generate, 8, None).is_err());
        assert!(generate(b"nope", "g", Method::Generate, 8, None).is_err());
        assert_eq!(
            json(&error_body(429, "quota")),
            serde_json::json!({"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}})
        );
        assert_eq!(status_name(503), "UNAVAILABLE");
        assert_eq!(Method::parse("countTokens", true), None);
    }
}
