//! ringgate's own token counts, for when a provider reports no usage: a stream that ends
//! without a usage chunk, a client that disconnects mid-stream, a plain response without
//! `usage`. Pure code: no I/O, no runtime, no locks after the first use of a vocabulary.
//!
//! - [`Family`]: which tokenizer a model uses ([`Family::of_model`]).
//! - [`count`]: the tokens of a text.
//! - [`prompt_tokens`]: the prompt tokens of a chat/completions/embeddings request body.
//! - [`OutputCounter`]: a running count of the generated text in an SSE stream;
//!   [`count_body`]: the same for a whole response.
//!
//! OpenAI families are counted exactly (as tiktoken's `encode_ordinary`); every other model
//! is counted with cl100k_base, a documented approximation (see [`Family::Approx`] and
//! docs/governance.md, "Token counts when the provider reports none").
//!
//! Tokenizer choice — `cargo bench -p tokens --bench count -- --warm-up-time 1
//! --measurement-time 3`, release, 2 shared cores, o200k_base, one run:
//!
//! | input | bpe-openai 0.3.2 | tiktoken-rs 0.12.1 | `tokens::count` |
//! |---|---|---|---|
//! | 40-byte delta | 0.55 µs | 0.80 µs | 0.55 µs |
//! | 4 KB prose | 68 µs | 99 µs | 62 µs |
//! | 100 KB prose | 1.64 ms | 2.52 ms | 1.52 ms |
//! | 100 KB base64 | 4.60 ms | 5.45 ms | 4.35 ms |
//! | first use, o200k / cl100k | 38 / 16 ms | 98 / 42 ms | + 1.8 / 0.7 ms |
//!
//! All three give the same counts, equal to Python tiktoken's on the strings checked.
//! `bpe-openai` is chosen: 1.2–1.5× faster, and it cannot fail at run time, where
//! tiktoken-rs's `fancy-regex` splitter gives up on a long white-space run
//! (`"a" + 1 MB of spaces + "b"`) and its `encode_ordinary` unwraps that error into a
//! panic. Its cost is size: the two vocabularies are embedded pre-built (≈ 47 MB of
//! read-only data in the binary; tiktoken-rs embeds ≈ 5 MB of text and builds its tables
//! at load) and take ≈ 66 MB (o200k) and ≈ 29 MB (cl100k) of memory once loaded, per
//! process. Nothing is downloaded at build or run time: the `.tiktoken` files ship inside
//! the crate and its build script converts them. `tokens::count` is bpe-openai's encoder
//! behind our own pre-tokenizer (see `vocab`), which takes no lock. `tiktoken-rs` remains a
//! dev-dependency only: for this bench and as a second reference in tests.

mod family;
mod json;
mod output;
mod prompt;
mod vocab;

pub use family::Family;
pub use output::{count_body, OutputCounter, MAX_EVENT_BYTES, MAX_UNSETTLED};
pub use prompt::{
    prompt_tokens, prompt_tokens_at_most, IMAGE_LOW_DETAIL_TOKENS, IMAGE_TOKENS, REPLY_PRIMING,
    TOKENS_PER_MESSAGE, TOKENS_PER_NAME,
};

/// The tokens of `text` in `family`'s vocabulary (special-token strings such as
/// `<|endoftext|>` count as ordinary text). The first call for a vocabulary loads it
/// (tens of milliseconds); after that a call takes no lock, and costs about 15 µs per KB
/// of prose.
pub fn count(family: Family, text: &str) -> u64 {
    family.vocab().count(text)
}
