//! AWS Bedrock Runtime Converse dialect (`POST /model/{modelId}/converse`
//! and `/converse-stream`): request parsing, the Converse response, the
//! binary event stream (`application/vnd.amazon.eventstream`) and the AWS
//! JSON error shape (`{"message":..}` + `x-amzn-errortype`). Also
//! `InvokeModel` (`POST /model/{modelId}/invoke`) for the Titan Text
//! Embeddings and Cohere Embed models.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::reply::{
    embedding_vector, next_id, prompt_tokens, split_text, to_bytes, value_text, Output, Reply,
    StreamOutput, Tools, Transcript, TOOL_INPUT,
};
use crate::wire::bedrock_event;

/// Pieces the tool input JSON is streamed in.
const TOOL_JSON_PIECES: usize = 3;
/// Bedrock pads stream events with a `p` member of varying length so their
/// size does not reveal the text; the mock sends a fixed one, which keeps
/// clients honest about ignoring unknown members.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    messages: Option<Vec<Message>>,
    /// `[{"text":..}]` (also guardContent / cachePoint blocks).
    #[serde(default)]
    system: Value,
    #[serde(default)]
    tool_config: Option<ToolConfig>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    /// `[{"text"}|{"image"}|{"toolUse"}|{"toolResult"}|...]`.
    #[serde(default)]
    content: Vec<Value>,
}

#[derive(Deserialize)]
struct ToolConfig {
    #[serde(default)]
    tools: Vec<Value>,
}

/// Text of a message and whether it returns tool results.
fn message_text(content: &[Value]) -> (String, bool) {
    let mut text = String::new();
    let mut tool_result = false;
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(r) = block.get("toolResult") {
            tool_result = true;
            text.push_str(&value_text(&r["content"]));
        }
    }
    (text, tool_result)
}

/// `converse` (`stream == false`) and `converse-stream`.
pub fn converse(
    body: &[u8],
    stream: bool,
    stream_chunks: usize,
    forced_tool: Option<&str>,
) -> Result<Output, String> {
    let req: Request = serde_json::from_slice(body).map_err(|e| {
        format!("Malformed input request, please reformat your input and try again: {e}")
    })?;
    let messages = req.messages.ok_or(
        "1 validation error detected: Value null at 'messages' failed to satisfy constraint: \
         Member must not be null",
    )?;
    if messages.is_empty() {
        return Err("A conversation must start with a user message.".to_owned());
    }
    let mut transcript = Transcript::default();
    transcript.system(&value_text(&req.system));
    for msg in &messages {
        let (text, tool_result) = message_text(&msg.content);
        transcript.message(msg.role == "user", text, tool_result);
    }
    let tool_specs = req.tool_config.map(|c| c.tools).unwrap_or_default();
    let tools = Tools {
        offered: !tool_specs.is_empty(),
        first_name: tool_specs
            .iter()
            .find_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str)),
    };
    let reply = Reply::new(&transcript, tools, forced_tool);
    let tool_use_id = format!("tooluse_mock_{}", next_id());
    let stop_reason = if reply.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let output_tokens = reply.output_tokens();
    let usage = json!({
        "inputTokens": reply.input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": reply.input_tokens + output_tokens,
    });
    let metrics = json!({"latencyMs": 1});

    if !stream {
        let mut content = vec![json!({"text": reply.text})];
        if reply.tool.is_some() {
            let input: Value = serde_json::from_str(TOOL_INPUT).unwrap_or(Value::Null);
            content.push(json!({"toolUse": {
                "toolUseId": tool_use_id, "name": reply.tool, "input": input,
            }}));
        }
        return Ok(Output::Json(to_bytes(&json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": metrics,
        }))));
    }

    let mut events = vec![event("messageStart", json!({"role": "assistant"}))];
    let content_start = events.len();
    for piece in split_text(&reply.text, stream_chunks) {
        events.push(event(
            "contentBlockDelta",
            json!({"delta": {"text": piece}, "contentBlockIndex": 0}),
        ));
    }
    let mut content_end = events.len();
    events.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    if reply.tool.is_some() {
        events.push(event(
            "contentBlockStart",
            json!({
                "start": {"toolUse": {"toolUseId": tool_use_id, "name": reply.tool}},
                "contentBlockIndex": 1,
            }),
        ));
        for piece in split_text(TOOL_INPUT, TOOL_JSON_PIECES) {
            events.push(event(
                "contentBlockDelta",
                json!({"delta": {"toolUse": {"input": piece}}, "contentBlockIndex": 1}),
            ));
        }
        content_end = events.len();
        events.push(event("contentBlockStop", json!({"contentBlockIndex": 1})));
    }
    events.push(event("messageStop", json!({"stopReason": stop_reason})));
    events.push(event(
        "metadata",
        json!({"usage": usage, "metrics": metrics}),
    ));
    Ok(Output::Stream(StreamOutput {
        events,
        content: content_start..content_end,
        content_type: "application/vnd.amazon.eventstream",
        bad_event: bedrock_event("contentBlockDelta", b"{not json"),
        crc_framed: true,
    }))
}

/// Embedding length when a Titan request gives no `dimensions`, and for
/// Cohere (the same default as the OpenAI mode, so vectors match).
const DEFAULT_DIMENSIONS: usize = 16;
const MAX_DIMENSIONS: usize = 65_536;
/// Most texts Cohere Embed on Bedrock takes in one call.
const COHERE_MAX_TEXTS: usize = 96;

/// Titan Text Embeddings request; like Bedrock, unknown keys are rejected.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TitanRequest {
    input_text: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    normalize: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    embedding_types: Option<Value>,
}

/// Cohere Embed v3 request; like Bedrock, unknown keys are rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CohereRequest {
    texts: Option<Vec<String>>,
    input_type: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    truncate: Option<String>,
    #[serde(default)]
    embedding_types: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    images: Option<Value>,
}

/// `invoke` on an embedding model: the Titan shape for `amazon.titan-embed*`
/// ids, the Cohere shape for `cohere.embed*` (a foundation-model ARN is
/// judged by its last path segment), with the vectors the OpenAI mode gives
/// for the same text (16 dimensions, or Titan's `dimensions`).
pub fn invoke(body: &[u8], model_id: &str) -> Result<Output, String> {
    let model = model_id.rsplit('/').next().unwrap_or(model_id);
    let malformed =
        |e| format!("Malformed input request: {e}, please reformat your input and try again.");
    if model.starts_with("amazon.titan-embed") {
        let req: TitanRequest = serde_json::from_slice(body).map_err(malformed)?;
        let text = req
            .input_text
            .ok_or("Malformed input request: required key [inputText] not found")?;
        let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
        if !(1..=MAX_DIMENSIONS).contains(&dims) {
            return Err(format!("dimensions must be between 1 and {MAX_DIMENSIONS}"));
        }
        return Ok(Output::Json(to_bytes(&json!({
            "embedding": embedding_vector(&text, dims),
            "inputTextTokenCount": prompt_tokens(text.chars().count()),
        }))));
    }
    if model.starts_with("cohere.embed") {
        let req: CohereRequest = serde_json::from_slice(body).map_err(malformed)?;
        let texts = req
            .texts
            .ok_or("Malformed input request: required key [texts] not found")?;
        if req.input_type.is_none() {
            return Err("Malformed input request: required key [input_type] not found".to_owned());
        }
        if texts.len() > COHERE_MAX_TEXTS {
            return Err(format!(
                "Malformed input request: expected maxLength: {COHERE_MAX_TEXTS}, actual: {}",
                texts.len()
            ));
        }
        let vectors: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| embedding_vector(t, DEFAULT_DIMENSIONS))
            .collect();
        let (embeddings, response_type) = match req.embedding_types {
            Some(_) => (json!({"float": vectors}), "embeddings_by_type"),
            None => (json!(vectors), "embeddings_floats"),
        };
        return Ok(Output::Json(to_bytes(&json!({
            "embeddings": embeddings,
            "id": format!("mock-embed-{}", next_id()),
            "response_type": response_type,
            "texts": texts,
        }))));
    }
    Err(format!(
        "The mock serves InvokeModel only for amazon.titan-embed* and cohere.embed* models, \
         not {model_id}"
    ))
}

/// One event-stream frame whose payload is `payload` plus padding.
fn event(event_type: &str, mut payload: Value) -> Bytes {
    payload["p"] = json!(PADDING);
    bedrock_event(event_type, &to_bytes(&payload))
}

/// The AWS error type (`x-amzn-errortype`) for a status code.
pub fn error_type(status: u16) -> &'static str {
    match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerException",
        _ => "ValidationException",
    }
}

/// `{"message": ..}`; the type goes in the `x-amzn-errortype` header.
pub fn error_body(message: &str) -> Bytes {
    to_bytes(&json!({"message": message}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::json;

    /// Decode frames back into (event type, payload), checking both CRCs.
    fn decode(frames: &[Bytes]) -> Vec<(String, Value)> {
        frames
            .iter()
            .map(|f| {
                let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
                let (total, hlen) = (be32(&f[0..4]) as usize, be32(&f[4..8]) as usize);
                assert_eq!(total, f.len());
                assert_eq!(be32(&f[8..12]), crc32fast::hash(&f[..8]));
                assert_eq!(be32(&f[total - 4..]), crc32fast::hash(&f[..total - 4]));
                // The first header is :event-type.
                let h = &f[12..12 + hlen];
                let name_len = h[0] as usize;
                assert_eq!(&h[1..1 + name_len], b":event-type");
                let at = 2 + name_len;
                let vlen = u16::from_be_bytes([h[at], h[at + 1]]) as usize;
                let event_type = std::str::from_utf8(&h[at + 2..at + 2 + vlen]).unwrap();
                (event_type.to_owned(), json(&f[12 + hlen..total - 4]))
            })
            .collect()
    }

    const BODY: &[u8] = br#"{"system":[{"text":"be brief"}],
        "messages":[{"role":"user","content":[{"text":"first"}]},
                    {"role":"assistant","content":[{"text":"ok"}]},
                    {"role":"user","content":[{"image":{"format":"png","source":{"bytes":""}}},{"text":"hello world"}]}],
        "inferenceConfig":{"maxTokens":10}}"#;

    #[test]
    fn converse_plain() {
        let out = converse(BODY, false, 8, None).unwrap().into_json();
        assert_eq!(
            json(&out),
            serde_json::json!({
                "output":{"message":{"role":"assistant","content":[{"text":"echo: hello world"}]}},
                "stopReason":"end_turn",
                "usage":{"inputTokens":7,"outputTokens":3,"totalTokens":10},
                "metrics":{"latencyMs":1}
            })
        );
    }

    #[test]
    fn converse_tool_use() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"weather in Paris"}]}],
            "toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":{}}}}]}}"#;
        let out = converse(body, false, 8, None).unwrap().into_json();
        let v = json(&out);
        assert_eq!(v["stopReason"], "tool_use");
        let tool = &v["output"]["message"]["content"][1]["toolUse"];
        assert_eq!(tool["name"], "get_weather");
        assert_eq!(tool["input"], serde_json::json!({"location":"Paris"}));
        assert!(tool["toolUseId"]
            .as_str()
            .unwrap()
            .starts_with("tooluse_mock_"));
    }

    #[test]
    fn converse_stream_frames() {
        let out = converse(BODY, true, 3, Some("calc")).unwrap().into_stream();
        assert!(out.crc_framed);
        let events = decode(&out.events);
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "contentBlockStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(out.content, 1..9);
        let text: String = events[1..4]
            .iter()
            .map(|(_, p)| p["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Let me check.");
        assert_eq!(events[5].1["start"]["toolUse"]["name"], "calc");
        let input: String = events[6..9]
            .iter()
            .map(|(_, p)| p["delta"]["toolUse"]["input"].as_str().unwrap())
            .collect();
        assert_eq!(input, TOOL_INPUT);
        assert_eq!(events[10].1["stopReason"], "tool_use");
        assert_eq!(events[11].1["usage"]["totalTokens"], 7 + 3 + 5);
    }

    /// A JSON array of numbers as the f32s the mock serialized.
    fn floats(v: &Value) -> Vec<f32> {
        serde_json::from_value(v.clone()).unwrap()
    }

    #[test]
    fn invoke_titan_and_cohere() {
        let out = invoke(
            br#"{"inputText":"hello world","dimensions":8,"normalize":true}"#,
            "amazon.titan-embed-text-v2:0",
        )
        .unwrap()
        .into_json();
        let v = json(&out);
        assert_eq!(v["inputTextTokenCount"], 3);
        assert_eq!(floats(&v["embedding"]), embedding_vector("hello world", 8));

        let out = invoke(br#"{"inputText":"a"}"#, "amazon.titan-embed-text-v1")
            .unwrap()
            .into_json();
        assert_eq!(json(&out)["embedding"].as_array().unwrap().len(), 16);

        let out = invoke(
            br#"{"texts":["a","b"],"input_type":"search_document","truncate":"NONE"}"#,
            "arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3",
        )
        .unwrap()
        .into_json();
        let v = json(&out);
        assert_eq!(v["response_type"], "embeddings_floats");
        assert_eq!(v["texts"], serde_json::json!(["a", "b"]));
        assert_eq!(floats(&v["embeddings"][1]), embedding_vector("b", 16));

        let out = invoke(
            br#"{"texts":["a"],"input_type":"search_query","embedding_types":["float"]}"#,
            "cohere.embed-multilingual-v3",
        )
        .unwrap()
        .into_json();
        let v = json(&out);
        assert_eq!(v["response_type"], "embeddings_by_type");
        assert_eq!(
            floats(&v["embeddings"]["float"][0]),
            embedding_vector("a", 16)
        );

        for (body, model) in [
            (
                &br#"{"inputText":"a","texts":["a"]}"#[..],
                "amazon.titan-embed-text-v2:0",
            ),
            (br#"{}"#, "amazon.titan-embed-text-v2:0"),
            (
                br#"{"inputText":"a","dimensions":0}"#,
                "amazon.titan-embed-text-v2:0",
            ),
            (br#"{"texts":["a"]}"#, "cohere.embed-english-v3"),
            (
                br#"{"input_type":"search_query"}"#,
                "cohere.embed-english-v3",
            ),
            (
                br#"{"inputText":"a"}"#,
                "anthropic.claude-3-haiku-20240307-v1:0",
            ),
        ] {
            assert!(
                invoke(body, model).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn invalid_requests_and_errors() {
        assert!(converse(b"{", false, 8, None).is_err());
        assert!(converse(b"{}", false, 8, None).is_err());
        assert!(converse(br#"{"messages":[]}"#, false, 8, None).is_err());
        assert_eq!(json(&error_body("no")), serde_json::json!({"message":"no"}));
        assert_eq!(error_type(429), "ThrottlingException");
        assert_eq!(error_type(400), "ValidationException");
        assert_eq!(error_type(500), "InternalServerException");
    }
}
