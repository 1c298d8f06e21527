//! Bedrock: SigV4 against AWS's published test vectors, eventstream framing, and Converse
//! golden tests built from the Converse API reference examples.

mod common;

use common::*;
use serde_json::{json, Value};
use translate::bedrock::eventstream::{encode_frame, Decoder, HeaderValue};
use translate::bedrock::sigv4::{self, SigningParams};
use translate::bedrock::{self, ChatStream};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20150830T123600Z";

fn params<'a>(
    method: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
) -> SigningParams<'a> {
    SigningParams {
        method,
        host: "example.amazonaws.com",
        path: "/",
        query: "",
        headers,
        body,
        access_key: AKID,
        secret_key: SECRET,
        session_token: None,
        region: "us-east-1",
        service: "service",
        amz_date: DATE,
        sign_content_sha256: false,
    }
}

fn auth(h: &[(String, String)]) -> &str {
    &h.iter().find(|(k, _)| k == "authorization").unwrap().1
}

// aws-sig-v4-test-suite: get-vanilla, post-vanilla, post-x-www-form-urlencoded.
#[test]
fn sigv4_test_suite() {
    let h = sigv4::sign(&params("GET", &[], b""));
    assert_eq!(auth(&h), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    assert!(h.contains(&("x-amz-date".into(), DATE.into())));
    assert!(h.contains(&(
        "x-amz-content-sha256".into(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
    )));

    let h = sigv4::sign(&params("POST", &[], b""));
    assert_eq!(auth(&h), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");

    let headers = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let h = sigv4::sign(&params("POST", &headers, b"Param1=value1"));
    assert_eq!(auth(&h), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

// The worked example in AWS's SigV4 documentation (IAM ListUsers).
#[test]
fn sigv4_docs_example() {
    assert_eq!(
        hex::encode(sigv4::signing_key(SECRET, "20150830", "us-east-1", "iam")),
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    );
    let headers = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
    )];
    let mut p = params("GET", &headers, b"");
    p.host = "iam.amazonaws.com";
    p.query = "Action=ListUsers&Version=2010-05-08";
    p.service = "iam";
    let h = sigv4::sign(&p);
    assert_eq!(auth(&h), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

#[test]
fn sigv4_bedrock_shape() {
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let path = bedrock::model_path("anthropic.claude-3-5-sonnet-20240620-v1:0", true);
    assert_eq!(
        path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    let mut p = params("POST", &headers, b"{}");
    p.path = &path;
    p.service = "bedrock";
    p.host = "bedrock-runtime.us-east-1.amazonaws.com";
    p.session_token = Some("TOKEN");
    p.sign_content_sha256 = true;
    let h = sigv4::sign(&p);
    assert!(auth(&h).contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="));
    assert!(h.contains(&("x-amz-security-token".into(), "TOKEN".into())));
    assert_eq!(h.len(), 4);
    // deterministic
    assert_eq!(h, sigv4::sign(&p));
}

#[test]
fn eventstream_roundtrip_and_splits() {
    let mut input = encode_frame(
        &[(":event-type", "a"), (":message-type", "event")],
        b"{\"x\":1}",
    );
    input.extend(encode_frame(&[(":event-type", "b")], b""));
    // a frame with non-string header types: bool true, byte, int, long, bytes, uuid, timestamp
    let mut h = Vec::new();
    for (name, ty, val) in [
        ("t", 0u8, vec![]),
        ("f", 1, vec![]),
        ("b", 2, vec![7]),
        ("s", 3, vec![0, 1]),
        ("i", 4, vec![0, 0, 0, 1]),
        ("l", 5, vec![0; 8]),
        ("ba", 6, vec![0, 2, 9, 9]),
        ("ts", 8, vec![0; 8]),
        ("u", 9, vec![1; 16]),
        (":event-type", 7, vec![0, 1, b'c']),
    ] {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(ty);
        h.extend(val);
    }
    let total = 12 + h.len() + 3 + 4;
    let mut f = Vec::new();
    f.extend((total as u32).to_be_bytes());
    f.extend((h.len() as u32).to_be_bytes());
    f.extend(crc32fast::hash(&f).to_be_bytes());
    f.extend(&h);
    f.extend(b"abc");
    f.extend(crc32fast::hash(&f).to_be_bytes());
    input.extend(&f);

    for step in [1, 3, input.len()] {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in input.chunks(step) {
            d.push(piece);
            while let Some(fr) = d.next_frame().unwrap() {
                got.push((
                    fr.header_str(":event-type").unwrap().to_owned(),
                    fr.payload.to_vec(),
                    fr.headers().count(),
                ));
                if fr.header_str(":event-type") == Some("c") {
                    assert_eq!(
                        fr.headers().find(|(n, _)| *n == "ba").unwrap().1,
                        HeaderValue::Bytes(&[9, 9])
                    );
                }
            }
        }
        assert!(!d.has_pending());
        assert_eq!(
            got,
            vec![
                ("a".into(), b"{\"x\":1}".to_vec(), 2),
                ("b".into(), vec![], 1),
                ("c".into(), b"abc".to_vec(), 10)
            ]
        );
    }
}

#[test]
fn eventstream_bad_crc_and_lengths() {
    let good = encode_frame(&[(":event-type", "a")], b"payload");
    let mut bad_prelude = good.clone();
    bad_prelude[9] ^= 1;
    let mut bad_msg = good.clone();
    let n = bad_msg.len();
    bad_msg[n - 6] ^= 1;
    let mut bad_len = good.clone();
    bad_len[0..4].copy_from_slice(&8u32.to_be_bytes());
    let c = crc32fast::hash(&bad_len[..8]).to_be_bytes();
    bad_len[8..12].copy_from_slice(&c);
    for bad in [bad_prelude, bad_msg, bad_len] {
        let mut d = Decoder::new();
        d.push(&bad);
        assert_upstream_payload(d.next_frame());
    }
    // truncated: needs more input, no error
    let mut d = Decoder::new();
    d.push(&good[..good.len() - 1]);
    assert!(d.next_frame().unwrap().is_none());
    assert!(d.has_pending());
}

#[test]
fn converse_request_golden() {
    let body = br#"{
        "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "What's in it?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_1", "type": "function", "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "Elemental Hotel"}
        ],
        "tools": [{"type": "function", "function": {"name": "top_song", "description": "Get the most popular song played on a radio station.", "parameters": {"type": "object", "properties": {"sign": {"type": "string"}}, "required": ["sign"]}}}],
        "tool_choice": "required",
        "max_tokens": 512, "temperature": 0.5, "top_p": 0.9, "stop": "END"
    }"#;
    let r = bedrock::chat_request(body, "anthropic.claude-3-haiku-20240307-v1:0", false).unwrap();
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!({
            "system": [{"text": "Be nice."}],
            "messages": [
                {"role": "user", "content": [{"text": "What's in it?"}, {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "Elemental Hotel"}]}}]}
            ],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "top_song", "description": "Get the most popular song played on a radio station.", "inputSchema": {"json": {"type": "object", "properties": {"sign": {"type": "string"}}, "required": ["sign"]}}}}],
                "toolChoice": {"any": {}}
            }
        })
    );
    assert!(bedrock::chat_request(br#"{"messages":[],"n":2}"#, "m", false).is_err());
    assert!(bedrock::chat_request(br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x"}}]}]}"#, "m", false).is_err());
}

#[test]
fn converse_response_golden() {
    let body = br#"{
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me look."},
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 375, "outputTokens": 36, "totalTokens": 411},
        "metrics": {"latencyMs": 2153}
    }"#;
    let v: Value =
        serde_json::from_slice(&bedrock::chat_response(body, "claude", 9).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "chatcmpl-bedrock-9", "object": "chat.completion", "created": 9, "model": "claude",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me look.", "refusal": null,
                "tool_calls": [{"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function", "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}}]
            }}],
            "usage": {"prompt_tokens": 375, "completion_tokens": 36, "total_tokens": 411}
        })
    );
    assert_upstream_payload(bedrock::chat_response(b"{}", "c", 0));
}

pub fn converse_stream_fixture() -> Vec<u8> {
    let ev = converse_event;
    let mut s = Vec::new();
    s.extend(ev("messageStart", r#"{"p":"abcd","role":"assistant"}"#));
    s.extend(ev(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcdefgh"}"#,
    ));
    s.extend(ev(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":" there\n"},"p":"ab"}"#,
    ));
    s.extend(ev(
        "contentBlockStop",
        r#"{"contentBlockIndex":0,"p":"abc"}"#,
    ));
    s.extend(ev("contentBlockStart", r#"{"contentBlockIndex":1,"start":{"toolUse":{"name":"top_song","toolUseId":"tooluse_1"}},"p":"a"}"#));
    s.extend(ev(
        "contentBlockDelta",
        r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"sign\": "}},"p":"a"}"#,
    ));
    s.extend(ev(
        "contentBlockDelta",
        r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"WZPZ\"}"}},"p":"a"}"#,
    ));
    s.extend(ev("contentBlockStop", r#"{"contentBlockIndex":1,"p":"a"}"#));
    s.extend(ev("messageStop", r#"{"p":"abc","stopReason":"tool_use"}"#));
    s.extend(ev("metadata", r#"{"metrics":{"latencyMs":1234},"p":"abc","usage":{"inputTokens":100,"outputTokens":20,"totalTokens":120,"cacheReadInputTokens":10}}"#));
    s
}

fn chunk(delta: Value, finish: Value) -> Value {
    chat_chunk("chatcmpl-bedrock-3", 3, "claude", delta, finish)
}

#[test]
fn converse_stream_golden() {
    let out = run_all(
        || ChatStream::new("claude".into(), 3, true),
        &converse_stream_fixture(),
    );
    assert_eq!(
        data_only(&out),
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hi"}), Value::Null),
            chunk(json!({"content": " there\n"}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "tooluse_1", "type": "function", "function": {"name": "top_song", "arguments": ""}}]}),
                Value::Null
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"sign\": "}}]}),
                Value::Null
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"WZPZ\"}"}}]}),
                Value::Null
            ),
            chunk(json!({}), json!("tool_calls")),
            json!({"id": "chatcmpl-bedrock-3", "object": "chat.completion.chunk", "created": 3, "model": "claude", "choices": [],
                   "usage": {"prompt_tokens": 110, "completion_tokens": 20, "total_tokens": 130, "prompt_tokens_details": {"cached_tokens": 10}}}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn converse_stream_errors() {
    let input = converse_stream_fixture();
    // truncated anywhere before messageStop's end → finish errs; never panics
    let stop_end = {
        let mut d = Decoder::new();
        d.push(&input);
        let mut end = 0;
        let mut offset = 0;
        while let Some(f) = d.next_frame().unwrap() {
            offset += 16
                + f.payload.len()
                + f.headers()
                    .map(|(n, v)| {
                        1 + n.len()
                            + 1
                            + match v {
                                HeaderValue::String(s) => 2 + s.len(),
                                _ => 0,
                            }
                    })
                    .sum::<usize>();
            if f.header_str(":event-type") == Some("messageStop") {
                end = offset;
            }
        }
        end
    };
    assert!(stop_end > 500 && stop_end < input.len());
    for cut in 0..stop_end {
        let mut s = ChatStream::new("c".into(), 0, false);
        let mut out = Vec::new();
        s.feed(&input[..cut], &mut out).unwrap();
        assert!(s.finish(&mut out).is_err(), "cut {cut}");
    }
    // corrupted CRC mid-stream
    let mut bad = input.clone();
    bad[40] ^= 0xff;
    let mut s = ChatStream::new("c".into(), 0, false);
    assert_upstream_payload(s.feed(&bad, &mut Vec::new()));
    // bad JSON payload with valid CRCs
    let mut s = ChatStream::new("c".into(), 0, false);
    let f = encode_frame(
        &[
            (":event-type", "contentBlockDelta"),
            (":message-type", "event"),
        ],
        b"{not json",
    );
    assert_upstream_payload(s.feed(&f, &mut Vec::new()));
    // exception frame
    let f = encode_frame(
        &[
            (":exception-type", "throttlingException"),
            (":message-type", "exception"),
        ],
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    );
    assert_error_chunk(
        ChatStream::new("c".into(), 0, false),
        &f,
        json!({"error": {"message": "Too many requests, please wait before trying again.", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}),
    );
}

#[test]
fn error_mapping() {
    let v: Value = serde_json::from_slice(&bedrock::error_to_openai(
        400,
        Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        br#"{"message":"Malformed input request"}"#,
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "Malformed input request", "type": "invalid_request_error", "param": null, "code": null}})
    );
    let v: Value = serde_json::from_slice(&bedrock::error_to_openai(
        429,
        None,
        br#"{"message":"slow down"}"#,
    ))
    .unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let v: Value = serde_json::from_slice(&bedrock::error_to_openai(
        403,
        Some("AccessDeniedException"),
        b"denied",
    ))
    .unwrap();
    assert_eq!(
        v["error"],
        json!({"message": "denied", "type": "permission_error", "param": null, "code": null})
    );
}
