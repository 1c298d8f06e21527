//! The two OpenAI vocabularies, o200k_base and cl100k_base, loaded once per process, and
//! the counting primitives over them.
//!
//! A vocabulary is tiktoken's pre-tokenizer regex plus the byte-pair encoding of each piece
//! it splits off. The encodings come from `bpe-openai` (compiled into the binary at build
//! time; nothing is read from disk or the network). The pre-tokenizer is our own copy of
//! tiktoken's patterns, run with `regex-automata`'s `meta::Regex` and a cache per thread
//! per vocabulary: `bpe-openai`'s own splitter uses the regex's internal pool, which takes a
//! mutex on every search from any thread but the first one to use it, and shards count from
//! many threads.
//!
//! Costs: the first count of a vocabulary on any thread loads it (o200k ≈ 40 ms, cl100k
//! ≈ 17 ms in release builds; ≈ 66 MB and ≈ 29 MB of memory); the first count on a thread
//! allocates that thread's regex cache. After that a count takes no lock, allocates only
//! inside the BPE (two small buffers per piece), and runs at about 65 MB/s of prose and
//! 23 MB/s of base64 (`benches/count.rs`).

use bpe_openai::byte_pair_encoding::BytePairEncoding;
use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};
use std::cell::RefCell;
use std::sync::OnceLock;

/// Which encoding to count with. `Family` maps onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vocab {
    O200k,
    Cl100k,
}

/// A loaded vocabulary: its encoding and its pre-tokenizer.
struct Loaded {
    bpe: &'static BytePairEncoding,
    split: Regex,
    /// Per pattern of `split`: whether its match ends with one look-ahead character that is
    /// not part of the piece (the rewrite of tiktoken's `\s+(?!\S)`).
    lookahead: [bool; 3],
}

// tiktoken's pre-tokenizer patterns, as `bpe-openai` 0.3 rewrites them: the negative
// look-ahead `\s+(?!\S)` becomes the pattern `\s+\s` whose last character is dropped from
// the piece, and `\s+$` keeps the end-of-text case. `tests::agrees_with_bpe_openai` checks
// that these stay identical to that crate's in effect.
const CL100K_PATTERN: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+$";
const O200K_PATTERN: &str = concat!(
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|\\p{N}{1,3}",
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
    "|\\s*[\\r\\n]+",
    "|\\s+$",
);
const WHITESPACE_BEFORE_NON_SPACE: &str = "\\s+\\s";
const WHITESPACE: &str = "\\s+";

static O200K: OnceLock<Loaded> = OnceLock::new();
static CL100K: OnceLock<Loaded> = OnceLock::new();

thread_local! {
    /// This thread's regex caches, one per vocabulary (index `Vocab as usize`).
    static CACHES: RefCell<[Option<Cache>; 2]> = const { RefCell::new([None, None]) };
}

impl Vocab {
    fn loaded(self) -> &'static Loaded {
        match self {
            Vocab::O200k => {
                O200K.get_or_init(|| load(&bpe_openai::o200k_base().bpe, O200K_PATTERN))
            }
            Vocab::Cl100k => {
                CL100K.get_or_init(|| load(&bpe_openai::cl100k_base().bpe, CL100K_PATTERN))
            }
        }
    }

    /// The number of tokens `text` encodes to, as tiktoken's `encode_ordinary` would give:
    /// special-token strings such as `<|endoftext|>` count as ordinary text.
    pub(crate) fn count(self, text: &str) -> u64 {
        let loaded = self.loaded();
        let mut total = 0u64;
        self.for_each_piece(text, |piece| total += loaded.piece_tokens(piece));
        total
    }

    /// Counts the pieces of `text` that further text appended to it cannot change: all but
    /// the last `keep` pre-tokenizer pieces. Returns their tokens and where the unsettled
    /// rest begins.
    pub(crate) fn count_settled(self, text: &str, keep: usize) -> (u64, usize) {
        let loaded = self.loaded();
        let mut starts = std::collections::VecDeque::with_capacity(keep + 1);
        let mut total = 0u64;
        let mut offset = 0usize;
        self.for_each_piece(text, |piece| {
            starts.push_back((offset, piece.len()));
            offset += piece.len();
            if starts.len() > keep {
                if let Some((start, len)) = starts.pop_front() {
                    total += loaded.piece_tokens(&text[start..start + len]);
                }
            }
        });
        let settled = starts.front().map_or(text.len(), |&(start, _)| start);
        (total, settled)
    }

    /// Calls `f` with each pre-tokenizer piece of `text`, in order; the pieces concatenate to
    /// `text`.
    fn for_each_piece(self, text: &str, mut f: impl FnMut(&str)) {
        let loaded = self.loaded();
        let mut run = |cache: &mut Cache| loaded.pieces(cache, text, &mut f);
        let done = CACHES.try_with(|caches| match caches.try_borrow_mut() {
            Ok(mut caches) => {
                run(caches[self as usize].get_or_insert_with(|| loaded.split.create_cache()))
            }
            // Only reachable if `f` counted again on this thread; not done in this crate.
            Err(_) => run(&mut loaded.split.create_cache()),
        });
        if done.is_err() {
            // The thread-local is being destroyed (a count from another thread-local's
            // destructor): use a cache of our own.
            run(&mut loaded.split.create_cache());
        }
    }
}

fn load(bpe: &'static BytePairEncoding, pattern: &str) -> Loaded {
    let split = Regex::new_many(&[pattern, WHITESPACE_BEFORE_NON_SPACE, WHITESPACE])
        // The patterns are constants, covered by every test; a failure here is a build defect.
        .unwrap_or_else(|e| panic!("tiktoken pre-tokenizer pattern does not compile: {e}"));
    Loaded {
        bpe,
        split,
        lookahead: [false, true, false],
    }
}

impl Loaded {
    fn piece_tokens(&self, piece: &str) -> u64 {
        self.bpe.count(piece.as_bytes()) as u64
    }

    fn pieces(&self, cache: &mut Cache, text: &str, f: &mut impl FnMut(&str)) {
        let mut at = 0;
        while at < text.len() {
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            let Some(m) = self.split.search_with(cache, &input) else {
                // The patterns match every character; should they ever not, the rest is one
                // piece rather than dropped.
                f(&text[at..]);
                return;
            };
            let mut end = m.end();
            if self.lookahead.get(m.pattern().as_usize()) == Some(&true) {
                // `\s+\s` matched at least two characters; drop the last one.
                if let Some(c) = text[at..end].chars().next_back() {
                    if end - c.len_utf8() > at {
                        end -= c.len_utf8();
                    }
                }
            }
            if end <= at {
                f(&text[at..]);
                return;
            }
            f(&text[at..end]);
            at = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings that exercise every pattern: contractions, case runs, digits, punctuation
    /// with newlines, white-space runs before text and at the end, CJK, combining marks,
    /// emoji, and special-token text.
    pub(crate) const TRICKY: &[&str] = &[
        "",
        "hello world",
        "Hello, world!",
        "I'm sure they'll say it's John's, won't they? I'D SAY IT'S NOT.",
        "HTTPServer parseJSONResponse XMLHttpRequest iPhone McDonald",
        "1234567890 3.14159 1,000,000 v1.2.3 0x1F",
        "a  b   c    d\t\te\n\nf \n g  \n\n  h   ",
        "trailing spaces   ",
        "   leading spaces",
        "line\r\nwindows\r\n\r\nend\n",
        "fn main() {\n    println!(\"{}\", 42);\n}\n",
        "https://example.com/v1/chat?x=1&y=two#frag // path/to/file.rs",
        "日本語のテキスト、中文文本。한국어 텍스트",
        "naïve café Größe e\u{301} a\u{308}\u{304}",
        "emoji 🚀🚀 👩‍👩‍👧 flags 🇫🇷",
        "<|endoftext|> <|im_start|>user",
        "    \n\n\n    \t",
        "'s 's'S 'll",
    ];

    #[test]
    fn known_counts_match_python_tiktoken() {
        // Counts from Python tiktoken 0.14 `encode_ordinary`.
        let cases: &[(&str, u64, u64)] = &[
            ("hello world", 2, 2),
            ("Hello, world!", 4, 4),
            ("The quick brown fox jumps over the lazy dog.", 10, 10),
            ("日本語のテキスト", 6, 8),
            ("naïve café 🚀", 6, 7),
            ("  leading spaces\n\n\ttabs", 6, 6),
            ("fn main() { println!(\"{}\", 42); }", 10, 10),
        ];
        for &(text, o200k, cl100k) in cases {
            assert_eq!(Vocab::O200k.count(text), o200k, "o200k {text:?}");
            assert_eq!(Vocab::Cl100k.count(text), cl100k, "cl100k {text:?}");
        }
    }

    #[test]
    fn agrees_with_bpe_openai() {
        for text in TRICKY {
            let o = bpe_openai::o200k_base().count(*text) as u64;
            let c = bpe_openai::cl100k_base().count(*text) as u64;
            assert_eq!(Vocab::O200k.count(text), o, "o200k {text:?}");
            assert_eq!(Vocab::Cl100k.count(text), c, "cl100k {text:?}");
        }
    }

    #[test]
    fn agrees_with_tiktoken_rs() {
        let o200k = tiktoken_rs::o200k_base_singleton();
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let mut all = String::new();
        for text in TRICKY {
            all.push_str(text);
            assert_eq!(
                Vocab::O200k.count(text),
                o200k.encode_ordinary(text).len() as u64,
                "o200k {text:?}"
            );
            assert_eq!(
                Vocab::Cl100k.count(text),
                cl100k.encode_ordinary(text).len() as u64,
                "cl100k {text:?}"
            );
        }
        assert_eq!(
            Vocab::O200k.count(&all),
            o200k.encode_ordinary(&all).len() as u64
        );
    }

    #[test]
    fn pieces_concatenate_to_the_text() {
        for vocab in [Vocab::O200k, Vocab::Cl100k] {
            for text in TRICKY {
                let mut joined = String::new();
                vocab.for_each_piece(text, |p| {
                    assert!(!p.is_empty());
                    joined.push_str(p);
                });
                assert_eq!(&joined, text);
            }
        }
    }

    #[test]
    fn settled_pieces_plus_the_rest_is_the_whole_count() {
        for vocab in [Vocab::O200k, Vocab::Cl100k] {
            for text in TRICKY {
                for keep in 0..4 {
                    let (settled, at) = vocab.count_settled(text, keep);
                    assert_eq!(settled + vocab.count(&text[at..]), vocab.count(text));
                }
            }
        }
    }

    #[test]
    fn long_white_space_runs_count_without_failing() {
        // tiktoken-rs panics on this one (fancy-regex's backtracking limit).
        let text = format!("a{}b", " ".repeat(1_000_000));
        assert_eq!(
            Vocab::O200k.count(&text),
            bpe_openai::o200k_base().count(text.as_str()) as u64
        );
    }

    #[test]
    fn counts_from_many_threads() {
        let want = Vocab::O200k.count(TRICKY[3]);
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| Vocab::O200k.count(TRICKY[3])))
            .collect();
        for t in threads {
            assert_eq!(t.join().ok(), Some(want));
        }
    }
}
