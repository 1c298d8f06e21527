//! A governed or traced stream's usage, read event by event ([`StreamUsage`]). When the
//! gateway asked a provider for stream usage the client did not ask for
//! (`stream_options.include_usage`), the usage chunk is read here and kept out of the client's
//! stream, and so is the `"usage": null` OpenAI puts in every other chunk then.

use std::ops::Range;

use tokens::{Family, OutputCounter};
use vocab::TokenUsage;

use super::units::Units;
use super::usage::{
    last_usage_key, parse, string_field, text, top_level_usage_at, with_separator, FinishReason,
    Tally, TopUsage, CHOICES, FINISH_REASON, MODEL, NO_CHOICES,
};

/// Watches an OpenAI chat stream event by event for its usage chunk (and its finish reason
/// and model), optionally removing that chunk from what the client gets, and keeps what it
/// generated in case the provider reports no usage.
pub struct StreamUsage {
    /// The start of an event not yet complete.
    pending: Vec<u8>,
    strip: bool,
    /// Also read the finish reason and the model (a traced request).
    describe: bool,
    usage: Option<TokenUsage>,
    finish_reason: Option<FinishReason>,
    model: Option<Box<str>>,
    generated: Generated,
}

impl StreamUsage {
    /// `family`: the tokenizer that counts the output when the provider reports no usage;
    /// `describe`: also read the finish reason and the model, which only a trace reads (they
    /// cost a scan of every event until the last).
    pub fn new(strip: bool, family: Family, describe: bool) -> Self {
        Self {
            pending: Vec::new(),
            strip,
            describe,
            usage: None,
            finish_reason: None,
            model: None,
            generated: Generated::new(family),
        }
    }

    /// What the stream used and how it ended, so far. Output tokens are counted by the
    /// gateway only when the provider reported no usage (its count wins).
    pub fn tally(&mut self) -> Tally {
        Tally {
            usage: self.usage,
            output_tokens: if self.usage.is_some() {
                0
            } else {
                self.generated.tokens()
            },
            finish_reason: self.finish_reason,
            model: self.model.clone(),
            units: Units::default(),
        }
    }

    /// Passes complete events of `input` to `out`, reading usage from them and dropping the
    /// usage-only chunk when stripping. An incomplete last event waits for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.generated.feed(input);
        // Events are passed one by one: room for all of them at once, not grown by doubling.
        out.reserve(input.len());
        if self.pending.is_empty() {
            // Events mostly arrive whole: read them where they are, keep only a cut one.
            let used = self.events(input, out);
            self.pending.extend_from_slice(&input[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(input);
            let used = self.events(&pending, out);
            pending.drain(..used);
            self.pending = pending;
        }
    }

    /// Reads and passes on the complete events at the start of `bytes`; how many bytes they
    /// took.
    fn events(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> usize {
        let mut start = 0;
        while let Some((len, first_line)) = event_bounds(&bytes[start..]) {
            let event_end = start + len;
            let event = &bytes[start..event_end];
            // Mostly the event's one line is its data; otherwise it is looked for after it.
            let data = event[..first_line]
                .strip_prefix(b"data:")
                .or_else(|| data_line(&event[first_line + 1..]));
            let (pass, usage) = inspect(event, data, self.strip);
            if usage.is_some() {
                self.usage = usage;
            }
            if self.describe && self.model.is_none() {
                self.model = string_field(event, &MODEL).map(text);
            }
            if self.describe && self.finish_reason.is_none() {
                self.finish_reason = string_field(event, &FINISH_REASON).map(FinishReason::of);
            }
            match pass {
                Pass::Whole => out.extend_from_slice(event),
                Pass::Without(cut) => {
                    out.extend_from_slice(&event[..cut.start]);
                    out.extend_from_slice(&event[cut.end..]);
                }
                Pass::Dropped => {}
            }
            start = event_end;
        }
        start
    }

    /// Whatever is left at the end of the stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

/// The text a stream generated, kept as its raw OpenAI-form events while they pass and counted
/// only when asked (the provider reported no usage, or the client left). Most providers do
/// report usage, and counting every event as it passes would cost about a microsecond each;
/// keeping them costs a copy. Past [`Generated::MAX_KEPT`] bytes they are counted at once, so a
/// long stream holds no more than that.
struct Generated {
    family: Family,
    kept: Vec<u8>,
    counter: Option<OutputCounter>,
}

impl Generated {
    const MAX_KEPT: usize = 1 << 20;

    fn new(family: Family) -> Self {
        Self {
            family,
            kept: Vec::new(),
            counter: None,
        }
    }

    fn feed(&mut self, events: &[u8]) {
        self.kept.extend_from_slice(events);
        if self.kept.len() > Self::MAX_KEPT {
            self.count_kept();
        }
    }

    fn count_kept(&mut self) {
        let family = self.family;
        let counter = self
            .counter
            .get_or_insert_with(|| OutputCounter::new(family));
        counter.feed(&self.kept);
        self.kept.clear();
    }

    /// Tokens of the complete events fed so far.
    fn tokens(&mut self) -> u64 {
        self.count_kept();
        self.counter.as_ref().map_or(0, OutputCounter::tokens)
    }
}

/// The length of the event at the start of `bytes` (up to and with its blank line) and the end
/// of its first line; `None` while the event is not whole. Both come from one scan for line
/// ends: an event is mostly a single `data:` line, whose end is the event's too.
fn event_bounds(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut first_line_end = None;
    for at in memchr::memchr_iter(b'\n', bytes) {
        let first = *first_line_end.get_or_insert(at);
        if bytes.get(at + 1) == Some(&b'\n') {
            return Some((at + 2, first));
        }
    }
    None
}

/// The value of an event's `data:` line. Lines are found with `memchr` rather than by
/// splitting at every byte: an event is a line of a few hundred bytes, and the split was
/// most of the stream stage's own time (docs/perf.md).
fn data_line(event: &[u8]) -> Option<&[u8]> {
    let mut rest = event;
    loop {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        if let Some(data) = rest[..end].strip_prefix(b"data:") {
            return Some(data);
        }
        rest = rest.get(end + 1..)?;
    }
}

/// What becomes of one event of a stream on its way to the client.
enum Pass {
    Whole,
    /// Without these bytes: a `"usage": null` member the client did not ask for.
    Without(Range<usize>),
    /// The usage chunk the client did not ask for.
    Dropped,
}

/// Reads an event's usage from its data line `data`; returns what goes to the client, and the
/// usage. `strip`: the client did not ask for usage, the gateway did.
fn inspect(event: &[u8], data: Option<&[u8]>, strip: bool) -> (Pass, Option<TokenUsage>) {
    let Some(data) = data else {
        return (Pass::Whole, None);
    };
    let data = data.trim_ascii();
    // One search for the key: most chunks have none; those that do are read from where it is.
    let Some(key) = last_usage_key(data) else {
        return (Pass::Whole, None);
    };
    // Asked for usage, OpenAI sends `"usage":null` on every chunk but the last: seen without
    // parsing the chunk, and cut out when the client did not ask, which a stream without
    // usage would not show. The last chunk, with the counts, is read from where they are
    // too; only a chunk whose usage cannot be shown to be the outermost object's is parsed.
    let (usage, has_choices) = match top_level_usage_at(data, key) {
        Some(TopUsage {
            counts: None,
            member,
        }) => {
            if !strip {
                return (Pass::Whole, None);
            }
            let cut = with_separator(data, member);
            let at = data.as_ptr() as usize - event.as_ptr() as usize;
            return (Pass::Without(at + cut.start..at + cut.end), None);
        }
        // Without a parse, a chunk with the bytes `"choices"` is taken to have them.
        Some(TopUsage {
            counts: Some(usage),
            ..
        }) => (usage, CHOICES.find(data).is_some()),
        None => match parse(data) {
            Some(read) => read,
            None => return (Pass::Whole, None),
        },
    };
    let usage_only = !has_choices || NO_CHOICES.find(data).is_some();
    let pass = if strip && usage_only {
        Pass::Dropped
    } else {
        Pass::Whole
    };
    (pass, Some(usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_tell_their_finish_reason_and_model() {
        let stream = b"data: {\"model\":\"m-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"model\":\"m-1\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let mut s = StreamUsage::new(false, Family::O200k, true);
        let mut out = Vec::new();
        for piece in stream.chunks(7) {
            s.feed(piece, &mut out);
        }
        let tally = s.tally();
        assert_eq!(tally.finish_reason, Some(FinishReason::Stop));
        assert_eq!(tally.model.as_deref(), Some("m-1"));
        assert!(tally.usage.is_none() && tally.output_tokens > 0);
        // Untraced: the same stream, its tokens, no description.
        let mut s = StreamUsage::new(false, Family::O200k, false);
        let mut untraced = Vec::new();
        s.feed(stream, &mut untraced);
        let bare = s.tally();
        assert_eq!((bare.finish_reason, bare.model), (None, None));
        assert_eq!((bare.output_tokens, untraced), (tally.output_tokens, out));
    }

    #[test]
    fn an_event_ends_at_its_blank_line() {
        assert_eq!(event_bounds(b"data: {}\n\ndata: x"), Some((10, 8)));
        assert_eq!(event_bounds(b"event: x\ndata: {}\n\n"), Some((19, 8)));
        // Not whole yet: no blank line, or a line end that may be the blank line's start.
        assert_eq!(event_bounds(b"data: {}"), None);
        assert_eq!(event_bounds(b"data: {}\n"), None);
        assert_eq!(event_bounds(b"event: x\ndata: {}\n"), None);
    }

    #[test]
    fn the_data_line_is_found_among_the_others() {
        assert_eq!(data_line(b"data: {}\n\n"), Some(&b" {}"[..]));
        assert_eq!(data_line(b"event: x\nid: 1\ndata:{}\n\n"), Some(&b"{}"[..]));
        assert_eq!(data_line(b"event: x\n\n"), None);
        assert_eq!(data_line(b"data:"), Some(&b""[..]));
    }

    /// `stream` fed in pieces of `step` bytes to a stage that strips usage: what the client
    /// gets, and the stage.
    fn stripped_in_pieces(stream: &[u8], step: usize) -> (String, StreamUsage) {
        let mut s = StreamUsage::new(true, Family::O200k, false);
        let mut out = Vec::new();
        for piece in stream.chunks(step) {
            s.feed(piece, &mut out);
        }
        s.finish(&mut out);
        (String::from_utf8(out).unwrap(), s)
    }

    #[test]
    fn strips_the_usage_chunk_across_splits() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        for step in [1, 5, stream.len()] {
            let (text, s) = stripped_in_pieces(stream, step);
            assert!(!text.contains("usage"), "{text}");
            assert!(text.contains("[DONE]") && text.contains("hi"));
            assert_eq!(
                s.usage,
                Some(TokenUsage {
                    prompt: 3,
                    completion: 1,
                    cached: 0
                })
            );
        }
        let mut keep = StreamUsage::new(false, Family::O200k, true);
        let mut out = Vec::new();
        keep.feed(stream, &mut out);
        assert!(String::from_utf8(out).unwrap().contains("usage"));
    }

    #[test]
    fn a_usage_chunk_is_dropped_only_when_it_carries_no_choices() {
        let counted = |stream: &[u8]| {
            let (text, mut s) = stripped_in_pieces(stream, stream.len());
            let usage = s.tally().usage.map(|u| (u.prompt, u.completion));
            (text, usage)
        };
        // No `choices` member at all: the usage chunk alone, dropped.
        let alone = b"data: {\"id\":\"x\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        assert_eq!(counted(alone), ("data: [DONE]\n\n".into(), Some((3, 1))));
        // Usage on the last content chunk (as some OpenAI-compatible servers send it):
        // counted, and the chunk passes, its content with it.
        let with_content = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let (text, usage) = counted(with_content);
        assert_eq!(text.as_bytes(), with_content);
        assert_eq!(usage, Some((3, 1)));
        // A usage member that cannot be shown to be the outermost object's (here a value
        // that does not parse) is read by parsing the chunk, which fails: passed as it is.
        let broken = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":x}}\n\n";
        assert_eq!(
            counted(broken),
            (String::from_utf8(broken.to_vec()).unwrap(), None)
        );
    }

    #[test]
    fn chunks_with_null_usage_pass_and_the_last_one_counts() {
        // As OpenAI streams when usage is asked for: `"usage":null` on every chunk but the
        // last, which has the counts and no choices.
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        for step in [1, 7, stream.len()] {
            let (text, mut s) = stripped_in_pieces(stream, step);
            // Cut out of the chunks, as a stream the client asked without usage would be.
            assert!(!text.contains("usage"), "{text}");
            assert!(text.starts_with("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"));
            assert!(text.ends_with("\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"));
            assert_eq!(
                s.tally().usage.map(|u| (u.prompt, u.completion)),
                Some((3, 1))
            );
        }
        // Asked for by the client: passed as they came.
        let mut asked = StreamUsage::new(false, Family::O200k, false);
        let mut out = Vec::new();
        asked.feed(stream, &mut out);
        assert_eq!(out, stream);
    }
}
