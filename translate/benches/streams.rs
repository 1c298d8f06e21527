//! Throughput of every stream translator: bytes/s of upstream input and chunks/s (upstream
//! events) for a synthetic stream of text deltas plus one tool call.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use translate::StreamTranslator;

#[path = "../tests/common/mod.rs"]
mod common;

const N: usize = 1000;
const TEXT: &str = "Hello, this is a token of \\\"streamed\\\" text\\n";

fn anthropic_input() -> Vec<u8> {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for _ in 0..N {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{TEXT}\"}}}}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n");
    s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n");
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1000}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn openai_input() -> Vec<u8> {
    let head = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,";
    let mut s = String::new();
    s.push_str(&format!("{head}\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"));
    for _ in 0..N {
        s.push_str(&format!("{head}\"delta\":{{\"content\":\"{TEXT}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
    }
    s.push_str(&format!("{head}\"delta\":{{\"tool_calls\":[{{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{{\"name\":\"f\",\"arguments\":\"{{\\\"a\\\":1}}\"}}}}]}},\"finish_reason\":null}}]}}\n\n"));
    s.push_str(&format!(
        "{head}\"delta\":{{}},\"finish_reason\":\"tool_calls\"}}]}}\n\n"
    ));
    s.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1000,\"total_tokens\":1005}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn gemini_input() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..N {
        s.push_str(&format!("data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{TEXT}\"}}],\"role\": \"model\"}},\"index\": 0}}],\"usageMetadata\": {{\"promptTokenCount\": 8,\"candidatesTokenCount\": {i},\"totalTokenCount\": {}}},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"r1\"}}\r\n\r\n", i + 8));
    }
    s.push_str("data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\",\"args\": {\"a\": 1}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 1001,\"totalTokenCount\": 1009},\"responseId\": \"r1\"}\r\n\r\n");
    s.into_bytes()
}

fn bedrock_input() -> Vec<u8> {
    let ev = common::converse_event;
    let mut s = ev("messageStart", r#"{"p":"abcd","role":"assistant"}"#);
    for _ in 0..N {
        s.extend(ev(
            "contentBlockDelta",
            &format!(
                "{{\"contentBlockIndex\":0,\"delta\":{{\"text\":\"{TEXT}\"}},\"p\":\"abcdefgh\"}}"
            ),
        ));
    }
    s.extend(ev(
        "contentBlockStop",
        r#"{"contentBlockIndex":0,"p":"abc"}"#,
    ));
    s.extend(ev(
        "contentBlockStart",
        r#"{"contentBlockIndex":1,"start":{"toolUse":{"name":"f","toolUseId":"t1"}},"p":"a"}"#,
    ));
    s.extend(ev(
        "contentBlockDelta",
        r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"a\":1}"}},"p":"a"}"#,
    ));
    s.extend(ev("contentBlockStop", r#"{"contentBlockIndex":1,"p":"a"}"#));
    s.extend(ev("messageStop", r#"{"p":"abc","stopReason":"tool_use"}"#));
    s.extend(ev(
        "metadata",
        r#"{"usage":{"inputTokens":100,"outputTokens":20,"totalTokens":120}}"#,
    ));
    s
}

/// Feeds the input in 1 KiB pieces (a typical read size), reusing the output buffer.
fn run<T: StreamTranslator>(mut t: T, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for piece in input.chunks(1024) {
        t.feed(piece, out).unwrap();
    }
    t.finish(out).unwrap();
}

type RunFn = dyn Fn(&[u8], &mut Vec<u8>);

fn bench(c: &mut Criterion) {
    let cases: Vec<(&str, Vec<u8>, Box<RunFn>)> = vec![
        (
            "anthropic",
            anthropic_input(),
            Box::new(|i, o| {
                run(
                    translate::anthropic::ChatStream::new("m".into(), 1, true),
                    i,
                    o,
                )
            }),
        ),
        (
            "gemini",
            gemini_input(),
            Box::new(|i, o| {
                run(
                    translate::gemini::ChatStream::new("m".into(), 1, true),
                    i,
                    o,
                )
            }),
        ),
        (
            "bedrock",
            bedrock_input(),
            Box::new(|i, o| {
                run(
                    translate::bedrock::ChatStream::new("m".into(), 1, true),
                    i,
                    o,
                )
            }),
        ),
        (
            "inbound_anthropic",
            openai_input(),
            Box::new(|i, o| {
                run(
                    translate::inbound::anthropic::StreamFromChat::new("m".into()),
                    i,
                    o,
                )
            }),
        ),
        (
            "inbound_responses",
            openai_input(),
            Box::new(|i, o| {
                run(
                    translate::inbound::responses::StreamFromChat::new("m".into(), 1),
                    i,
                    o,
                )
            }),
        ),
    ];
    let mut out = Vec::with_capacity(1 << 20);
    for (name, input, f) in &cases {
        let mut g = c.benchmark_group("stream_bytes");
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), input, |b, i| {
            b.iter(|| f(black_box(i), &mut out))
        });
        g.finish();
        let mut g = c.benchmark_group("stream_chunks");
        g.throughput(Throughput::Elements(N as u64 + 6));
        g.bench_with_input(BenchmarkId::from_parameter(name), input, |b, i| {
            b.iter(|| f(black_box(i), &mut out))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
