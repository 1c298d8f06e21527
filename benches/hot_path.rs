//! Criterion benches of the pieces every proxied request passes through: parsing the client's
//! request head, extracting `model`/`stream` from the body (small and large prompts),
//! resolving the model, building the upstream head, decoding and re-framing an upstream
//! SSE stream, and a governed stream's usage stage. Run: `cargo bench --bench hot_path`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shards::bench::{extract_fields, Spliced};
use shards::governance::stream_usage::StreamUsage;
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
        trace: None,
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
            Spliced::new(&body, fields.model_span.clone(), "gpt-4o-mini", b"").write_to(&mut out);
            black_box(&out);
        })
    });
}

/// The events of an OpenAI chat stream; `usage`: as OpenAI streams when usage is asked for
/// (`"usage":null` on every chunk, then a usage-only chunk).
fn stream_events(events: usize, usage: bool) -> Vec<Vec<u8>> {
    let tail = if usage { ",\"usage\":null" } else { "" };
    let mut all: Vec<Vec<u8>> = (0..events)
        .map(|i| format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]{tail}}}\n\n"
        ).into_bytes())
        .collect();
    if usage {
        all.push(b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":256,\"total_tokens\":268}}\n\n".to_vec());
    }
    all.push(b"data: [DONE]\n\n".to_vec());
    all
}

/// An upstream SSE response body as it arrives: chunked frames of `data: {...}\n\n` events.
fn upstream_stream(events: Vec<Vec<u8>>) -> Vec<u8> {
    let mut wire = Vec::new();
    for event in events {
        push_chunk_frame(&mut wire, &event);
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

fn relay_side(c: &mut Criterion) {
    let wire = upstream_stream(stream_events(256, false));
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
    // The same reads holding whole chunks, as a plain relay now passes them: checked, not
    // decoded, and copied once to the client's buffer.
    group.bench_function("skim_and_pass_per_event", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new();
            for read in &reads {
                out.clear();
                let frames = decoder.skim(read).unwrap().unwrap();
                out.extend_from_slice(&read[..frames.chunks_end]);
                black_box(&out);
            }
            assert!(decoder.is_done());
        })
    });
    // A governed stream's usage stage, the gateway having asked for the usage the client
    // did not: every `"usage":null` cut out, the usage chunk read and dropped.
    let events = stream_events(256, true);
    group.bench_function("governed_usage_per_event", |b| {
        b.iter(|| {
            let mut usage = StreamUsage::new(true, tokens::Family::O200k, false);
            for event in &events {
                out.clear();
                usage.feed(event, &mut out);
                black_box(&out);
            }
            assert!(usage.tally().usage.is_some());
        })
    });
    // The same stage as a relay feeds it: chunked, one event a read, decoded, the stage's
    // output framed again for the client. (Reading whole chunks' payloads where they lie
    // instead was fewer instructions and ~4-12 % slower here: docs/perf.md, tenth session.)
    let governed_wire = upstream_stream(events);
    let governed_reads = split_frames(&governed_wire);
    let mut translated = Vec::with_capacity(4096);
    group.bench_function("governed_chunks_per_event", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new();
            let mut usage = StreamUsage::new(true, tokens::Family::O200k, false);
            for read in &governed_reads {
                translated.clear();
                out.clear();
                payload.clear();
                decoder.decode(read, &mut payload).unwrap();
                usage.feed(&payload, &mut translated);
                push_chunk_frame(&mut out, &translated);
                black_box(&out);
            }
            assert!(usage.tally().usage.is_some());
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

/// The routing layer: key choice, breaker bookkeeping, backoff.
fn routing(c: &mut Criterion) {
    use shards::bench::Health;
    use shards::bench::{backoff, KeyStates, Rng};
    use shards::snapshot::{ApiKey, BreakerPolicy};
    use std::time::{Duration, Instant};
    let keys: Vec<ApiKey> = (0..3)
        .map(|i| ApiKey {
            header_line: format!("authorization: Bearer sk-{i}\r\n").into_bytes(),
            weight: i + 1,
            models: Vec::new(),
        })
        .collect();
    let states = KeyStates::new(keys.len());
    let rng = Rng::new(42);
    let now = Instant::now();
    c.bench_function("routing/pick_key", |b| {
        b.iter(|| {
            states
                .pick(black_box(&keys), "gpt-4o-mini", 0, now, &rng)
                .unwrap()
        })
    });
    let health = Health::default();
    let policy = BreakerPolicy {
        consecutive_failures: 5,
        error_ratio: 0.5,
        min_requests: 20,
        open_for: Duration::from_secs(10),
        half_open_probes: 1,
    };
    c.bench_function("routing/breaker_admit_and_record", |b| {
        b.iter(|| {
            assert!(health.admit(now, &policy));
            health.record_success(black_box(Duration::from_micros(800)));
        })
    });
    c.bench_function("routing/backoff", |b| {
        b.iter(|| {
            backoff(
                black_box(2),
                Duration::from_millis(100),
                Duration::from_secs(2),
                &rng,
            )
        })
    });
}

/// Governance on the request path: key lookup among 10 000 keys, a lease take, price lookups,
/// usage parse.
fn governance(c: &mut Criterion) {
    use sha2::{Digest, Sha256};
    use shards::governance::lease::Lease;
    use shards::governance::request::authenticate;
    use shards::governance::{GovSnapshot, KeyPolicy, KeyTable};
    use std::sync::Arc;
    let mut keys = KeyTable::default();
    for i in 0..10_000 {
        let secret = format!("rg-{i:040}");
        keys.insert(
            Sha256::digest(secret.as_bytes()).into(),
            Arc::new(KeyPolicy {
                id: i.to_string(),
                team_id: None,
                customer_id: None,
                allowed_providers: Vec::new(),
                allowed_models: Vec::new(),
                expires_at: None,
                active: true,
                limits: Vec::new(),
                cache_ttl_secs: None,
            }),
        );
    }
    let snapshot = GovSnapshot {
        require_key: true,
        keys,
        ..Default::default()
    };
    let presented = format!("rg-{:040}", 1234);
    c.bench_function("governance/authenticate", |b| {
        b.iter(|| authenticate(&snapshot, Some(black_box(presented.as_bytes())), None, 1).unwrap())
    });
    let lease = Lease::default();
    c.bench_function("governance/lease_take", |b| {
        b.iter(|| {
            if !lease.take(1, 1) {
                lease.grant(1, 1_000_000);
            }
        })
    });
    // A governed request's price lookups: the output cap at admission, the price and the unit
    // prices at settlement, among a catalog's worth of bare model names.
    let mut prices = shards::governance::Prices::new(4096);
    for i in 0..300 {
        let price = shards::governance::Price {
            input_per_mtok: vocab::NanoUsd::from_nanos(150_000_000),
            output_per_mtok: vocab::NanoUsd::from_nanos(600_000_000),
            cached_input_per_mtok: vocab::NanoUsd::from_nanos(75_000_000),
            max_output: Some(16_384),
        };
        prices.insert(&format!("model-{i}"), price);
    }
    prices.insert("gpt-4o-mini", *prices.lookup("", "model-0").unwrap());
    c.bench_function("governance/price_lookups", |b| {
        b.iter(|| {
            let (provider, model) = (black_box("openai"), black_box("gpt-4o-mini"));
            let cap = prices.max_output(provider, model);
            let price = prices.lookup(provider, model).unwrap();
            let units = prices.lookup_units(provider, model);
            (cap, price.cost(12, 9, 0), units.is_none())
        })
    });
    // Admission's bound on a request's prompt tokens, before any tokenizer (every governed
    // request of a key with a token limit).
    let request = chat_body(200);
    c.bench_function("governance/prompt_bound", |b| {
        b.iter(|| tokens::prompt_tokens_at_most(black_box(&request)))
    });
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
    c.bench_function("governance/usage_from_body", |b| {
        b.iter(|| shards::governance::usage::from_body(black_box(body)).unwrap())
    });
}

/// Phase 11's metrics per request: the model's series found among 50, and its four
/// histograms recorded into (what `path/observe.rs` does after every response).
fn observe(c: &mut Criterion) {
    use shards::series::{SeriesIndex, SeriesTable};
    let table = SeriesTable::default();
    let index = SeriesIndex::default();
    let models: Vec<String> = (0..50).map(|i| format!("model-{i}")).collect();
    for m in &models {
        index.series(&table, 0, "openai", m);
    }
    let mut micros = 0u64;
    c.bench_function("observe/record_series", |b| {
        b.iter(|| {
            micros = (micros + 7919) % 5_000_000;
            let series = index.series(&table, 0, "openai", black_box(&models[17]));
            let t = series.class(0);
            t.duration.record(micros);
            t.first_byte.record(micros / 2);
            t.upstream.record(micros - micros / 10);
            t.overhead.record(black_box(9));
        })
    });
}

criterion_group!(
    benches,
    request_side,
    relay_side,
    routing,
    governance,
    observe
);
criterion_main!(benches);
