//! A usage object's token counts read by hand, for the shapes providers send: members whose
//! values are integers or `null`, and `*_details` objects of the same. Every governed response
//! has one, and serde's derived reader of it (field matching by string, aliases, `Option`
//! layers) was most of the time of reading a response's usage once the rest of the body was no
//! longer parsed (docs/perf.md). Anything else — strings, floats, arrays, escapes, a
//! duplicate key, numbers beyond `u64` — is left to serde ([`read`] answers `None`), so what
//! is accepted and what is refused stays serde's.

use vocab::TokenUsage;

/// The counts of the usage object at the start of `json` (after whitespace), and the length
/// of `json` up to the end of that object. `None` when the object is not of the plain shape:
/// the caller reads it with serde then.
pub(super) fn read(json: &[u8]) -> Option<(TokenUsage, usize)> {
    let mut at = Cursor { json, at: 0 };
    let (mut prompt, mut completion, mut details) = (Slot::Empty, Slot::Empty, Slot::Empty);
    let mut cached = Slot::Empty;
    at.members(|key, at| match key {
        b"prompt_tokens" | b"input_tokens" => prompt.fill(at.count()?),
        b"completion_tokens" | b"output_tokens" => completion.fill(at.count()?),
        b"prompt_tokens_details" | b"input_tokens_details" => {
            if at.null() {
                return details.fill(None);
            }
            details.fill(Some(0))?;
            at.members(|key, at| match key {
                b"cached_tokens" => cached.fill(at.count()?),
                _ => at.count().map(drop),
            })
        }
        _ => at.flat_value(),
    })?;
    // serde's `u64` fields with `default` take a missing member as 0, and refuse `null`.
    let required = |slot: Slot| match slot {
        Slot::Empty => Some(0),
        Slot::Full(n) => n,
    };
    let usage = TokenUsage {
        prompt: required(prompt)?,
        completion: required(completion)?,
        cached: match cached {
            Slot::Full(Some(n)) => n,
            _ => 0,
        },
    };
    Some((usage, at.at))
}

/// A member seen at most once: serde refuses an object naming a field twice (an alias
/// counts as the same field).
#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Full(Option<u64>),
}

impl Slot {
    fn fill(&mut self, value: Option<u64>) -> Option<()> {
        match self {
            Slot::Empty => {
                *self = Slot::Full(value);
                Some(())
            }
            Slot::Full(_) => None,
        }
    }
}

struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next byte that is not whitespace, consumed when it is `b`.
    fn eat(&mut self, b: u8) -> bool {
        while let Some(c) = self.json.get(self.at) {
            if !c.is_ascii_whitespace() {
                break;
            }
            self.at += 1;
        }
        let found = self.json.get(self.at) == Some(&b);
        self.at += usize::from(found);
        found
    }

    fn null(&mut self) -> bool {
        let found = self.eat(b'n') && self.json[self.at..].starts_with(b"ull");
        self.at += if found { 3 } else { 0 };
        found
    }

    /// An object's members, each handed to `each` once its key and colon are read; `each`
    /// reads the value.
    fn members(&mut self, mut each: impl FnMut(&[u8], &mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.key()?;
            if !self.eat(b':') {
                return None;
            }
            each(key, self)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}').then_some(());
        }
    }

    /// A key without escapes (`None` for one with: serde would unescape it).
    fn key(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let json = self.json;
        let len = memchr::memchr2(b'"', b'\\', &json[start..])?;
        if json[start + len] == b'\\' {
            return None;
        }
        self.at = start + len + 1;
        Some(&json[start..start + len])
    }

    /// A count: `Some(None)` for `null`, `Some(Some(n))` for a number that is a plain
    /// non-negative integer fitting `u64`, `None` for anything else (a sign, a fraction or an
    /// exponent makes a number serde refuses for a `u64`).
    fn count(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let start = self.at;
        if !self.number() {
            return None;
        }
        let n = self.json[start..self.at].iter().try_fold(0u64, |n, d| {
            let digit = d.is_ascii_digit().then(|| u64::from(d - b'0'))?;
            n.checked_mul(10)?.checked_add(digit)
        })?;
        Some(Some(n))
    }

    /// A member this reader does not use: `null`, a number (Groq's `queue_time` and other
    /// timings are fractions), or an object of those (the other `*_details`).
    fn flat_value(&mut self) -> Option<()> {
        if self.null() || self.number() {
            return Some(());
        }
        self.members(|_, at| (at.null() || at.number()).then_some(()))
    }

    /// Skips a JSON number, as strictly as serde reads one.
    fn number(&mut self) -> bool {
        let rest = &self.json[self.at..];
        let digits = |from: usize| {
            rest.get(from..)
                .map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count())
        };
        let mut end = usize::from(rest.first() == Some(&b'-'));
        let whole = digits(end);
        if whole == 0 || (whole > 1 && rest[end] == b'0') {
            return false;
        }
        end += whole;
        if rest.get(end) == Some(&b'.') {
            let fraction = digits(end + 1);
            if fraction == 0 {
                return false;
            }
            end += 1 + fraction;
        }
        if matches!(rest.get(end), Some(b'e' | b'E')) {
            end += 1 + usize::from(matches!(rest.get(end + 1), Some(b'+' | b'-')));
            let exponent = digits(end);
            if exponent == 0 {
                return false;
            }
            end += exponent;
        }
        self.at += end;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde's reader (the one `read` stands in for) makes of `json`.
    fn by_serde(json: &[u8]) -> Option<(TokenUsage, usize)> {
        let (counts, used) = super::super::usage::counts_by_serde(json)?;
        Some((counts?, used))
    }

    #[test]
    fn providers_usage_objects_are_read_by_hand_as_serde_reads_them() {
        let shapes: &[&[u8]] = &[
            br#"{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}"#,
            br#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":7,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
            br#"{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}"#,
            br#" { "prompt_tokens" : 1 ,
                  "completion_tokens": 2 } , "rest": 1}"#,
            br#"{"prompt_tokens":3,"prompt_tokens_details":null}"#,
            br#"{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":null}}"#,
            br#"{"prompt_tokens":18446744073709551615}"#,
            br#"{}"#,
            br#"{"total_tokens":5,"queue_time":null}"#,
            br#"{"queue_time":0.0213,"prompt_tokens":18,"prompt_time":1.5e-3,"completion_tokens":7,"completion_time":-0.5E+2,"total_tokens":25}"#,
        ];
        for json in shapes {
            let text = String::from_utf8_lossy(json);
            let hand = read(json).unwrap_or_else(|| panic!("not read by hand: {text}"));
            assert_eq!(Some(hand), by_serde(json), "{text}");
        }
    }

    /// Shapes the hand reader leaves to serde: it must never accept what serde refuses, nor
    /// read differently what serde accepts.
    #[test]
    fn other_shapes_are_left_to_serde() {
        let others: &[&[u8]] = &[
            br#"{"prompt_tokens":9.0}"#,
            br#"{"prompt_tokens":1e3}"#,
            br#"{"prompt_tokens":-1}"#,
            br#"{"prompt_tokens":01}"#,
            br#"{"prompt_tokens":null}"#,
            br#"{"prompt_tokens":"9"}"#,
            br#"{"prompt_tokens":18446744073709551616}"#,
            br#"{"prompt_tokens":1,"input_tokens":2}"#,
            br#"{"prompt_tokens":1,"prompt_tokens":1}"#,
            br#"{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}"#,
            br#"{"prompt_tokens_details":{"cached_tokens":1},"input_tokens_details":null}"#,
            br#"{"prompt\u005ftokens":4}"#,
            br#"{"model":"gpt-4o"}"#,
            br#"{"extra":[1,2]}"#,
            br#"{"extra":1.}"#,
            br#"{"extra":.5}"#,
            br#"{"extra":1e}"#,
            br#"{"extra":-}"#,
            br#"{"extra":00.5}"#,
            br#"{"extra":nul}"#,
            br#"{"extra":{"deep":{"deeper":1}}}"#,
            br#"{"prompt_tokens":1"#,
            br#"{"prompt_tokens":1,}"#,
            br#"{"prompt_tokens"1}"#,
            br#"[1]"#,
            br#"7"#,
            br#""#,
        ];
        for json in others {
            let text = String::from_utf8_lossy(json);
            assert_eq!(read(json), None, "read by hand: {text}");
        }
        // Each of them serde reads its own way (or refuses): the caller falls back to it.
        assert_eq!(
            by_serde(br#"{"prompt\u005ftokens":4}"#).map(|(u, _)| u.prompt),
            Some(4)
        );
        assert_eq!(by_serde(br#"{"prompt_tokens":1,"input_tokens":2}"#), None);
    }
}
