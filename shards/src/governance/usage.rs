//! Usage: reading token counts from OpenAI-shaped responses (whole bodies and streams), and
//! batching the records of requests ([`vocab::UsageRecord`]) for the coordinator. When the gateway asked a provider
//! for stream usage the client did not ask for (`stream_options.include_usage`), the usage
//! chunk is read here and kept out of the client's stream.

use serde::Deserialize;
use tokens::{Family, OutputCounter};
use vocab::{TokenUsage, UsageRecord};

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Counts {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Counts>,
    #[serde(default)]
    choices: Option<serde::de::IgnoredAny>,
}

fn parse(json: &[u8]) -> Option<(TokenUsage, bool)> {
    let v: WithUsage = serde_json::from_slice(json).ok()?;
    let c = v.usage?;
    let usage = TokenUsage {
        prompt: c.prompt_tokens,
        completion: c.completion_tokens,
        cached: c
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
    };
    Some((usage, v.choices.is_some()))
}

/// Usage from a whole OpenAI response body (chat, completions, embeddings, responses).
pub fn from_body(body: &[u8]) -> Option<TokenUsage> {
    parse(body).map(|(u, _)| u)
}

/// Watches an OpenAI chat stream event by event for its usage chunk, optionally removing
/// that chunk from what the client gets, and keeps what it generated in case the provider
/// reports no usage.
pub struct StreamUsage {
    /// The start of an event not yet complete.
    pending: Vec<u8>,
    strip: bool,
    pub usage: Option<TokenUsage>,
    generated: Generated,
}

impl StreamUsage {
    /// `family`: the tokenizer that counts the output when the provider reports no usage.
    pub fn new(strip: bool, family: Family) -> Self {
        Self {
            pending: Vec::new(),
            strip,
            usage: None,
            generated: Generated::new(family),
        }
    }

    /// Output tokens of what passed so far, counted by the gateway; 0 once the provider
    /// reported usage (its count wins).
    pub fn unreported_output_tokens(&mut self) -> u64 {
        if self.usage.is_some() {
            0
        } else {
            self.generated.tokens()
        }
    }

    /// Passes complete events of `input` to `out`, reading usage from them and dropping the
    /// usage-only chunk when stripping. An incomplete last event waits for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.generated.feed(input);
        self.pending.extend_from_slice(input);
        let mut start = 0;
        while let Some(end) = memchr::memmem::find(&self.pending[start..], b"\n\n") {
            let event_end = start + end + 2;
            let event = &self.pending[start..event_end];
            let (keep, usage) = inspect(event, self.strip);
            if usage.is_some() {
                self.usage = usage;
            }
            if keep {
                out.extend_from_slice(event);
            }
            start = event_end;
        }
        self.pending.drain(..start);
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

/// Reads an event's usage; returns whether it goes to the client, and the usage.
fn inspect(event: &[u8], strip: bool) -> (bool, Option<TokenUsage>) {
    if memchr::memmem::find(event, b"\"usage\"").is_none() {
        return (true, None);
    }
    let Some(data) = event
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"data:"))
    else {
        return (true, None);
    };
    match parse(data.trim_ascii()) {
        Some((usage, has_choices)) => {
            let usage_only =
                !has_choices || memchr::memmem::find(data, b"\"choices\":[]").is_some();
            (!(strip && usage_only), Some(usage))
        }
        None => (true, None),
    }
}

/// Collects a shard's usage records and sends them to the coordinator in batches — when a
/// batch is full, and from a timer — so the coordinator is woken a few times per second, not
/// once per request. A batch the queue has no room for stays here and goes with the next one;
/// beyond `MAX_PENDING` records the oldest are dropped and counted.
#[derive(Debug, Default)]
pub struct UsageBatcher {
    pending: std::cell::RefCell<Vec<UsageRecord>>,
}

impl UsageBatcher {
    /// Records sent together once this many are pending.
    pub const BATCH: usize = 256;
    /// Records kept while the coordinator's queue is full.
    pub const MAX_PENDING: usize = 65_536;

    /// Adds a record; sends the batch when full. Returns how many records were dropped.
    pub fn push(
        &self,
        record: UsageRecord,
        events: &crossbeam_channel::Sender<super::GovEvent>,
    ) -> usize {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(record);
            pending.len() >= Self::BATCH
        };
        if full {
            self.flush(events)
        } else {
            0
        }
    }

    /// Sends whatever is pending. Returns how many records were dropped.
    pub fn flush(&self, events: &crossbeam_channel::Sender<super::GovEvent>) -> usize {
        let batch = std::mem::take(&mut *self.pending.borrow_mut());
        if batch.is_empty() {
            return 0;
        }
        match events.try_send(super::GovEvent::Usage(batch)) {
            Ok(()) => 0,
            Err(e) => {
                let super::GovEvent::Usage(mut batch) = e.into_inner() else {
                    return 0;
                };
                let dropped = batch.len().saturating_sub(Self::MAX_PENDING);
                batch.drain(..dropped);
                *self.pending.borrow_mut() = batch;
                dropped
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_from_bodies() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            from_body(body),
            Some(TokenUsage {
                prompt: 12,
                completion: 5,
                cached: 4
            })
        );
        let responses = br#"{"object":"response","usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}"#;
        assert_eq!(
            from_body(responses),
            Some(TokenUsage {
                prompt: 3,
                completion: 2,
                cached: 0
            })
        );
        assert_eq!(from_body(br#"{"usage":null}"#), None);
    }

    #[test]
    fn strips_the_usage_chunk_across_splits() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        for step in [1, 5, stream.len()] {
            let mut s = StreamUsage::new(true, Family::O200k);
            let mut out = Vec::new();
            for piece in stream.chunks(step) {
                s.feed(piece, &mut out);
            }
            s.finish(&mut out);
            let text = String::from_utf8(out).unwrap();
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
        let mut keep = StreamUsage::new(false, Family::O200k);
        let mut out = Vec::new();
        keep.feed(stream, &mut out);
        assert!(String::from_utf8(out).unwrap().contains("usage"));
    }
}
