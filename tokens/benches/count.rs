//! The tokenizer choice, rerunnable: `bpe-openai` (the one `tokens` uses) against
//! `tiktoken-rs` (a dev-dependency kept only for this comparison), counting o200k_base
//! tokens in a 40-byte SSE delta, a 4 KB prompt, a 100 KB prompt and a 100 KB base64 blob;
//! then `tokens::count` itself (bpe-openai's encoder behind our lock-free pre-tokenizer),
//! one streamed event through `OutputCounter`, and `prompt_tokens` of a 4 KB chat request.
//! The one-time vocabulary load is timed once per crate at start (it cannot be repeated
//! inside one process) and printed, as are the counts (they must agree).
//!
//! `cargo bench -p tokens --bench count -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Instant;
use tokens::{Family, OutputCounter};

const PROSE: &str = "The gateway relays each server-sent event as it arrives, so the \
client sees the first token as soon as the provider sends it. When a provider streams \
without a usage chunk, ringgate counts the tokens itself: 3 per message, plus the text. \
Numbers like 1234567 and 3.14159, URLs like https://example.com/v1/chat?x=1, and code: \
fn main() { println!(\"{}\", 42); } — also naïve café, Größe, 日本語のテキスト, emoji 🚀.\n\n";

/// `len` bytes of mixed prose, code and non-Latin text, cut at a char boundary.
fn text(len: usize) -> String {
    let mut s = String::with_capacity(len + PROSE.len());
    while s.len() < len {
        s.push_str(PROSE);
    }
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// `len` bytes of base64-looking text without white space.
fn blob(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(ALPHABET[(x % 64) as usize])
        })
        .collect()
}

/// Times each crate's first use of o200k_base and cl100k_base. `tokens` runs last: its
/// time is what it adds to bpe-openai's load (compiling its own pre-tokenizer regex).
fn load_once() {
    fn time(what: &str, f: impl FnOnce() -> usize) {
        let t = Instant::now();
        let n = f();
        eprintln!("load {what}: {:?} ({n} tokens)", t.elapsed());
    }
    time("o200k_base  bpe-openai ", || {
        bpe_openai::o200k_base().count("warm up")
    });
    time("cl100k_base bpe-openai ", || {
        bpe_openai::cl100k_base().count("warm up")
    });
    time("o200k_base  tiktoken-rs", || {
        tiktoken_rs::o200k_base_singleton()
            .encode_ordinary("warm up")
            .len()
    });
    time("cl100k_base tiktoken-rs", || {
        tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary("warm up")
            .len()
    });
    time("o200k_base  tokens (+) ", || {
        tokens::count(Family::O200k, "warm up") as usize
    });
    time("cl100k_base tokens (+) ", || {
        tokens::count(Family::Cl100k, "warm up") as usize
    });
}

fn count(c: &mut Criterion) {
    load_once();
    let bpe = bpe_openai::o200k_base();
    let tik = tiktoken_rs::o200k_base_singleton();
    let inputs = [
        ("delta_40B", text(40)),
        ("prompt_4KB", text(4 * 1024)),
        ("prompt_100KB", text(100 * 1024)),
        ("blob_100KB", blob(100 * 1024)),
    ];
    let mut g = c.benchmark_group("o200k_count");
    for (name, input) in &inputs {
        let (a, b) = (bpe.count(input.as_str()), tik.encode_ordinary(input).len());
        let ours = tokens::count(Family::O200k, input);
        eprintln!("{name}: bpe-openai {a}, tiktoken-rs {b}, tokens::count {ours} tokens");
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(BenchmarkId::new("bpe-openai", name), input, |bn, s| {
            bn.iter(|| bpe.count(black_box(s.as_str())));
        });
        g.bench_with_input(BenchmarkId::new("tiktoken-rs", name), input, |bn, s| {
            bn.iter(|| tik.encode_ordinary(black_box(s)).len());
        });
        g.bench_with_input(BenchmarkId::new("tokens", name), input, |bn, s| {
            bn.iter(|| tokens::count(Family::O200k, black_box(s)));
        });
    }
    g.finish();

    let event = format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
        serde_json::to_string(&text(40)).unwrap_or_default()
    );
    let mut counter = OutputCounter::new(Family::O200k);
    c.bench_function("output_counter_event_40B", |bn| {
        bn.iter(|| counter.feed(black_box(event.as_bytes())));
    });
    c.bench_function("output_counter_tokens", |bn| bn.iter(|| counter.tokens()));

    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text(4 * 1024)},
        ],
    })
    .to_string();
    c.bench_function("prompt_tokens_chat_4KB", |bn| {
        bn.iter(|| tokens::prompt_tokens(Family::O200k, black_box(body.as_bytes())));
    });
}

criterion_group!(benches, count);
criterion_main!(benches);
