//! What a relayed API ([`crate::direct`]) is charged by besides tokens: seconds of audio
//! transcribed or translated, characters of speech, images made — read from the response as
//! it passes ([`UnitMeter`]) or from the request — and their list prices ([`UnitPrices`]),
//! in integer nano-dollars like token prices.

use memchr::memmem;
use vocab::{NanoUsd, TokenUsage};

/// Units a response reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Units {
    /// Audio seconds, rounded up.
    pub audio_seconds: u64,
    pub images: u64,
}

/// Bytes kept between pieces, so that a key and its value split across two reads is still
/// read once: longer than any key with its value.
const TAIL: usize = 64;

/// Reads the units and token usage of a relayed response from its bytes as they pass
/// (whole JSON bodies and event streams alike), keeping only a short tail between pieces —
/// an image response of many megabytes is never held. Keys are matched with their quotes,
/// which cannot appear unescaped inside a string value.
#[derive(Debug, Default)]
pub struct UnitMeter {
    pending: Vec<u8>,
    read: Reading,
}

impl UnitMeter {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let complete = self.pending.len().saturating_sub(TAIL);
        self.read = self.read.then(Reading::of(&self.pending, complete));
        self.pending.drain(..complete);
    }

    /// What the response used so far (all of it, once it ended).
    pub fn used(&self) -> (Units, Option<TokenUsage>) {
        let all = self
            .read
            .then(Reading::of(&self.pending, self.pending.len()));
        let seconds = all.seconds.or(all.duration).or(all.cue_end).unwrap_or(0.0);
        let units = Units {
            audio_seconds: seconds.max(0.0).ceil() as u64,
            images: all.images,
        };
        let usage =
            (all.input_tokens.is_some() || all.output_tokens.is_some()).then(|| TokenUsage {
                prompt: all.input_tokens.unwrap_or(0),
                completion: all.output_tokens.unwrap_or(0),
                cached: 0,
            });
        (units, usage)
    }
}

/// What part of a response says: the first value of each key, the images it holds.
#[derive(Debug, Default, Clone, Copy)]
struct Reading {
    seconds: Option<f64>,
    duration: Option<f64>,
    /// The latest end of a subtitle cue (`--> 00:01:02,500`): the `srt` and `vtt`
    /// transcription formats state no duration, so the last cue's end stands for it.
    cue_end: Option<f64>,
    images: u64,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Reading {
    /// The keys of `text` that start before `end`.
    fn of(text: &[u8], end: usize) -> Self {
        let values = |key: &[u8]| {
            memmem::find_iter(text, key)
                .take_while(|&at| at < end)
                .filter_map(|at| value_after(&text[at + key.len()..]))
                .collect::<Vec<_>>()
        };
        let number = |key: &[u8]| {
            values(key)
                .into_iter()
                .find_map(|v| std::str::from_utf8(v).ok()?.parse::<f64>().ok())
        };
        let images = [&b"\"b64_json\""[..], b"\"url\""]
            .iter()
            .map(|key| {
                values(key)
                    .iter()
                    .filter(|v| v.first() == Some(&b'"'))
                    .count()
            })
            .sum::<usize>();
        let cue_end = memmem::find_iter(text, b"-->")
            .take_while(|&at| at < end)
            .filter_map(|at| timestamp(&text[at + 3..]))
            .reduce(f64::max);
        Self {
            seconds: number(b"\"seconds\""),
            duration: number(b"\"duration\""),
            cue_end,
            images: images as u64,
            input_tokens: number(b"\"input_tokens\"").map(|n| n as u64),
            output_tokens: number(b"\"output_tokens\"").map(|n| n as u64),
        }
    }

    /// This reading followed by `later`'s: first values win, images add up.
    fn then(self, later: Self) -> Self {
        Self {
            seconds: self.seconds.or(later.seconds),
            duration: self.duration.or(later.duration),
            cue_end: match (self.cue_end, later.cue_end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            images: self.images + later.images,
            input_tokens: self.input_tokens.or(later.input_tokens),
            output_tokens: self.output_tokens.or(later.output_tokens),
        }
    }
}

/// The value after a key (`: value`): a number's text, or a string's opening quote and what
/// follows; `None` when the key is no object key (no colon) or the value is `null`.
fn value_after(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    if rest.first() == Some(&b'"') {
        return Some(rest);
    }
    let len = rest
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E'))
        .unwrap_or(rest.len());
    (len > 0).then(|| &rest[..len])
}

/// A subtitle timestamp after ` --> `, in seconds: `HH:MM:SS,mmm` (SRT) or
/// `[HH:]MM:SS.mmm` (WebVTT).
fn timestamp(rest: &[u8]) -> Option<f64> {
    let rest = rest.trim_ascii_start();
    let len = rest
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b':' | b',' | b'.'))
        .unwrap_or(rest.len());
    let text = std::str::from_utf8(&rest[..len]).ok()?.replace(',', ".");
    let mut parts = text.rsplit(':');
    let seconds: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let hours: f64 = parts.next().map_or(Some(0.0), |h| h.parse().ok())?;
    parts
        .next()
        .is_none()
        .then_some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// List prices of a model's non-token units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitPrices {
    /// Per minute of audio, charged by the second.
    pub per_audio_minute: NanoUsd,
    /// Per million characters of speech input.
    pub per_million_characters: NanoUsd,
    /// Per image, by tier: `quality/size`, `size` or `quality`.
    pub per_image: Vec<(String, NanoUsd)>,
}

impl UnitPrices {
    /// The cost of `units` and `characters`, images at `tier`; rounded up, never under: an
    /// image of a tier not listed costs the dearest listed.
    pub fn cost(&self, units: Units, characters: u64, tier: Option<&str>) -> NanoUsd {
        let audio = u128::from(units.audio_seconds) * u128::from(self.per_audio_minute.nanos());
        let speech = u128::from(characters) * u128::from(self.per_million_characters.nanos());
        let image = u128::from(self.image_price(tier).nanos());
        let total =
            audio.div_ceil(60) + speech.div_ceil(1_000_000) + u128::from(units.images) * image;
        NanoUsd::from_nanos(u64::try_from(total).unwrap_or(u64::MAX))
    }

    fn image_price(&self, tier: Option<&str>) -> NanoUsd {
        let listed = |name: &str| {
            self.per_image
                .iter()
                .find(|(t, _)| t == name)
                .map(|(_, p)| *p)
        };
        let size = tier.and_then(|t| t.rsplit_once('/').map(|(_, size)| size));
        tier.and_then(listed)
            .or_else(|| size.and_then(listed))
            .or_else(|| listed("default"))
            .unwrap_or_else(|| {
                self.per_image
                    .iter()
                    .map(|(_, p)| *p)
                    .max()
                    .unwrap_or(NanoUsd::ZERO)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(pieces: &[&[u8]]) -> (Units, Option<TokenUsage>) {
        let mut m = UnitMeter::default();
        for p in pieces {
            m.feed(p);
        }
        m.used()
    }

    #[test]
    fn reads_audio_seconds_and_tokens() {
        let body = br#"{"text":"hi \"seconds\": 99","usage":{"type":"duration","seconds":12.2}}"#;
        assert_eq!(meter(&[body]).0.audio_seconds, 13);
        let verbose = br#"{"task":"transcribe","duration": 8.0,"text":"x","segments":[]}"#;
        assert_eq!(meter(&[verbose]).0.audio_seconds, 8);
        let tokens = br#"{"text":"x","usage":{"type":"tokens","input_tokens":14,"output_tokens":45,"total_tokens":59}}"#;
        let (units, usage) = meter(&[tokens]);
        assert_eq!(units.audio_seconds, 0);
        assert_eq!(usage.map(|u| (u.prompt, u.completion)), Some((14, 45)));
    }

    #[test]
    fn subtitles_are_charged_to_the_end_of_their_last_cue() {
        let srt =
            b"1\n00:00:00,000 --> 00:00:04,200\nhello\n\n2\n00:00:04,200 --> 00:01:02,500\nworld\n";
        assert_eq!(meter(&[srt]).0.audio_seconds, 63);
        let pieces: Vec<&[u8]> = srt.chunks(5).collect();
        assert_eq!(meter(&pieces).0.audio_seconds, 63);
        let vtt = b"WEBVTT\n\n00:01.000 --> 00:07.250\nhi\n\n01:00:00.000 --> 01:00:01.000\nlate\n";
        assert_eq!(meter(&[vtt]).0.audio_seconds, 3601);
        assert_eq!(meter(&[b"plain text --> not a time"]).0.audio_seconds, 0);
    }

    #[test]
    fn counts_images_across_pieces() {
        let big = "A".repeat(10_000);
        let body = format!(
            r#"{{"created":1,"data":[{{"b64_json":"{big}"}},{{"b64_json":"{big}"}},{{"url":"https://x/y.png","revised_prompt":null}}]}}"#
        );
        let bytes = body.as_bytes();
        // Split in awkward places: inside keys and values.
        let pieces: Vec<&[u8]> = bytes.chunks(7).collect();
        assert_eq!(meter(&pieces).0.images, 3);
        assert_eq!(meter(&[bytes]).0.images, 3);
        assert_eq!(meter(&[br#"{"data":[{"url":null}]}"#]).0.images, 0);
    }

    #[test]
    fn unit_costs_round_up_and_never_under() {
        let prices = UnitPrices {
            per_audio_minute: "0.006".parse().unwrap(),
            per_million_characters: "15".parse().unwrap(),
            per_image: vec![
                ("1024x1024".into(), "0.04".parse().unwrap()),
                ("hd/1024x1024".into(), "0.08".parse().unwrap()),
                ("1792x1024".into(), "0.08".parse().unwrap()),
                ("hd/1792x1024".into(), "0.12".parse().unwrap()),
            ],
        };
        let audio = Units {
            audio_seconds: 61,
            images: 0,
        };
        assert_eq!(prices.cost(audio, 0, None).nanos(), 6_100_000);
        assert_eq!(prices.cost(Units::default(), 3, None).nanos(), 45_000);
        let two = Units {
            audio_seconds: 0,
            images: 2,
        };
        assert_eq!(
            prices.cost(two, 0, Some("hd/1024x1024")).nanos(),
            160_000_000
        );
        assert_eq!(
            prices.cost(two, 0, Some("standard/1792x1024")).nanos(),
            160_000_000
        );
        assert_eq!(prices.cost(two, 0, Some("512x512")).nanos(), 240_000_000);
    }
}
