//! Criterion benches of the response cache's hit path: the key of a request (its body
//! normalized and hashed), the lookup in the node's memory tier, and the replay of the kept
//! answer for the client — whole, or as a stream. Run: `cargo bench --bench cache`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shards::bench::{replay, Asked};
use shards::cache::key::{cache_key, KeyParts};
use shards::cache::{Entry, Form, NodeCache};
use shards::dialect::Inbound;
use vocab::TokenUsage;

fn chat_body(prompt_bytes: usize) -> Vec<u8> {
    let prompt = "lorem ipsum ".repeat(prompt_bytes / 12 + 1);
    format!(
        r#"{{"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{prompt}"}}],"model":"fast","temperature":0.2,"stream":true}}"#
    )
    .into_bytes()
}

/// A kept answer of about `answer_bytes` of content.
fn answer(answer_bytes: usize) -> Vec<u8> {
    let content = "The answer is forty-two. ".repeat(answer_bytes / 25 + 1);
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":40,"completion_tokens":120,"total_tokens":160}}}}"#
    )
    .into_bytes()
}

fn key_of(body: &[u8]) -> [u8; 32] {
    cache_key(&KeyParts {
        form: Form::Chat,
        scope: "key:7f0c2a",
        provider: "openai",
        model: "gpt-4o-mini",
        body,
    })
    .expect("an object")
}

fn hit_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache/key");
    for size in [350usize, 4_000] {
        let body = chat_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| key_of(black_box(body)))
        });
    }
    group.finish();

    let cache = NodeCache::new(64 << 20, None, false);
    let body = chat_body(350);
    let key = key_of(&body);
    cache.insert(
        key,
        Arc::new(Entry {
            form: Form::Chat,
            body: answer(600).into_boxed_slice(),
            usage: TokenUsage {
                prompt: 40,
                completion: 120,
                cached: 0,
            },
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            expires_at_ms: u64::MAX,
        }),
    );
    for (name, inbound, stream) in [
        ("chat", Inbound::Chat, false),
        ("chat_stream", Inbound::Chat, true),
        ("anthropic_stream", Inbound::AnthropicMessages, true),
    ] {
        let asked = Asked {
            inbound,
            stream,
            include_usage: true,
            model: "fast",
            created: 1_700_000_000,
        };
        c.bench_function(&format!("cache/exact_hit/{name}"), |b| {
            b.iter(|| {
                let entry = cache.get(&key_of(black_box(&body))).expect("kept");
                replay(&entry, &asked).expect("replayed").body.len()
            })
        });
    }
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
