//! Criterion benches of the pieces every proxied request passes through: parsing the client's
//! request head, extracting `model`/`stream` from the body (small and large prompts),
//! resolving the model, building the upstream head, and decoding and re-framing an upstream
//! SSE stream. Run: `cargo bench --bench hot_path`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shards::extract::{extract_fields, splice_model};
use shards::http::chunked::{push_chunk_frame, ChunkedDecoder};
use shards::http::request::parse_request_head;
use shards::http::upstream::{push_upstream_request_head, UpstreamHead};
use shards::route::ModelTable;

const HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: OpenAI/Python 1.57.0\r\nAccept: application/json\r\nContent-Type: application/json\r\nAuthorization: Bearer sk-test\r\nX-Stainless-Lang: python\r\nX-Stainless-Package-Version: 1.57.0\r\nContent-Length: 180\r\n\r\n";

fn chat_body(prompt_bytes: usize) -> Vec<u8> {
    let prompt = "lorem ipsum ".repeat(prompt_bytes / 12 + 1);
    format!(
        r#"{{"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{prompt}"}}],"model":"openai/gpt-4o-mini","temperature":0.2,"stream":true}}"#
    )
    .into_bytes()
}

fn request_side(c: &mut Criterion) {
    let mut spans = Vec::with_capacity(32);
    c.bench_function("parse_request_head", |b| {
        b.iter(|| parse_request_head(black_box(HEAD), 32 * 1024, &mut spans).unwrap())
    });

    let mut group = c.benchmark_group("extract_fields");
    for size in [200usize, 4_000, 100_000] {
        let body = chat_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(body.len()), &body, |b, body| {
            b.iter(|| extract_fields(black_box(body)).unwrap())
        });
    }
    group.finish();

    let mut table = ModelTable::new(None);
    table.add_provider("openai", 0, &["gpt-4o-mini".into(), "gpt-4o".into()]);
    table.add_provider("anthropic", 1, &[]);
    table.add_alias("fast", 0, "gpt-4o-mini");
    c.bench_function("resolve_model", |b| {
        b.iter(|| table.resolve(black_box("openai/gpt-4o-mini")).unwrap())
    });

    let body = chat_body(200);
    let fields = extract_fields(&body).unwrap();
    parse_request_head(HEAD, 32 * 1024, &mut spans)
        .unwrap()
        .unwrap();
    let up = UpstreamHead {
        host: "api.openai.com",
        fixed_headers: b"",
        key_line: b"authorization: Bearer sk-provider-key\r\n",
        extra: &[],
    };
    let mut out = Vec::with_capacity(8192);
    c.bench_function("build_upstream_request", |b| {
        b.iter(|| {
            out.clear();
            push_upstream_request_head(
                &mut out,
                b"POST",
                &[b"/v1", b"/chat/completions"],
                &up,
                HEAD,
                &spans,
                Some(body.len()),
            );
            splice_model(&mut out, &body, fields.model_span.clone(), "gpt-4o-mini");
            black_box(&out);
        })
    });
}

/// An upstream SSE response body as it arrives: chunked frames of `data: {...}\n\n` events.
fn upstream_stream(events: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for i in 0..events {
        let event = format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]}}\n\n"
        );
        push_chunk_frame(&mut wire, event.as_bytes());
    }
    push_chunk_frame(&mut wire, b"data: [DONE]\n\n");
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

fn relay_side(c: &mut Criterion) {
    let wire = upstream_stream(256);
    let mut group = c.benchmark_group("sse_relay");
    group.throughput(Throughput::Elements(257));
    let mut payload = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    // One upstream read per event (the common case when a provider flushes each token).
    let reads: Vec<&[u8]> = split_frames(&wire);
    group.bench_function("decode_and_reframe_per_event", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new();
            for read in &reads {
                payload.clear();
                out.clear();
                decoder.decode(read, &mut payload).unwrap();
                push_chunk_frame(&mut out, &payload);
                black_box(&out);
            }
            assert!(decoder.is_done());
        })
    });
    group.finish();
}

/// Splits a chunked body at frame boundaries, as if each frame arrived in its own read.
fn split_frames(wire: &[u8]) -> Vec<&[u8]> {
    let mut reads = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        let end = if size == 0 {
            rest.len()
        } else {
            line_end + 2 + size + 2
        };
        reads.push(&rest[..end]);
        rest = &rest[end..];
    }
    reads
}

criterion_group!(benches, request_side, relay_side);
criterion_main!(benches);
