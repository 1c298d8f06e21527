//! Usage records as bytes ([`UsageBytes`]): how governed requests' records travel from a shard
//! to the coordinator, wait in the usage spool (format 3) and are read back. A shard writes
//! each record straight from what its request holds ([`UsageRef`]: texts borrowed) into its
//! batch's buffer, so a record allocates nothing on the shard — an owned record's six or so
//! strings were allocated there per request and freed on the coordinator (docs/perf.md).
//! The coordinator reads a batch in place and the spool writes its bytes as they came.
//!
//! Each record is a varint length ([`crate::varint`]) and a payload: flags · id · [client id]
//! · ts_ms · [key] · [team] · [customer] · provider · model · status · prompt · completion ·
//! cached · cost · latency · overhead · [error code] · [cache hit: kind, saved prompt,
//! completion and cached tokens, saved cost] · [budget generations of key, team and customer,
//! each 0 for none or the generation + 1]. Bracketed fields are present when the flags
//! say so. The length is written after the payload, as a varint padded to three bytes (a
//! reader takes padded and minimal varints alike), so that the payload is written once.

use crate::usage::{CacheHit, CacheKind, TokenUsage, UsageRef};
use crate::varint::{self, put, put_str, Reader};
use crate::NanoUsd;

const CLIENT_ID: u64 = 1;
const KEY: u64 = 1 << 1;
const TEAM: u64 = 1 << 2;
const CUSTOMER: u64 = 1 << 3;
const ERROR_CODE: u64 = 1 << 4;
const CACHE_HIT: u64 = 1 << 5;
const STREAM: u64 = 1 << 6;
const ESTIMATED: u64 = 1 << 7;
const ADMITTED: u64 = 1 << 8;
const GENERATIONS: u64 = 1 << 9;

/// Bytes kept for a record's length, ahead of its payload: a varint of up to 21 bits.
const LENGTH_BYTES: usize = 3;

/// Records, each whole and readable: written by [`UsageBytes::push`], or kept by
/// [`UsageBytes::read`] from bytes that may be damaged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UsageBytes {
    bytes: Vec<u8>,
    count: usize,
}

impl UsageBytes {
    /// Empty, with room for `bytes` bytes of records.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of records it has room for without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Drops every record, keeping the room (a buffer to fill again).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// The records as written (what the spool stores).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends `r`.
    pub fn push(&mut self, r: &UsageRef<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; LENGTH_BYTES]);
        encode(r, &mut self.bytes);
        let len = self.bytes.len() - start - LENGTH_BYTES;
        if len < 1 << (7 * LENGTH_BYTES) {
            let padded = [
                (len as u8 & 0x7f) | 0x80,
                ((len >> 7) as u8 & 0x7f) | 0x80,
                (len >> 14) as u8,
            ];
            self.bytes[start..start + LENGTH_BYTES].copy_from_slice(&padded);
        } else {
            // Only texts of megabytes get here (request ids are header values).
            let mut minimal = Vec::new();
            put(&mut minimal, len as u64);
            self.bytes.splice(start..start + LENGTH_BYTES, minimal);
        }
        self.count += 1;
    }

    /// Appends `other`'s records after these.
    pub fn append(&mut self, other: UsageBytes) {
        if self.bytes.is_empty() && self.bytes.capacity() < other.bytes.capacity() {
            *self = other;
        } else {
            self.bytes.extend_from_slice(&other.bytes);
            self.count += other.count;
        }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = UsageRef<'_>> {
        let mut reader = Reader::new(&self.bytes);
        // Every record held reads: none is skipped.
        std::iter::from_fn(move || next(&mut reader, Texts::Held).map(|(_, r)| r)).flatten()
    }

    /// Drops the `n` oldest records.
    pub fn drop_oldest(&mut self, n: usize) {
        let mut reader = Reader::new(&self.bytes);
        let dropped = (0..n)
            .take_while(|_| next(&mut reader, Texts::Held).is_some())
            .count();
        let cut = self.bytes.len() - reader.bytes.len();
        self.bytes.drain(..cut);
        self.count -= dropped;
    }

    /// The records `bytes` holds whole and readable, and how many more it holds damaged
    /// (skipped). A record cut short (a crash while writing) ends them.
    pub fn read(bytes: &[u8]) -> (UsageBytes, usize) {
        let mut kept = UsageBytes::with_capacity(bytes.len());
        let mut damaged = 0;
        let mut reader = Reader::new(bytes);
        while let Some((raw, record)) = next(&mut reader, Texts::Checked) {
            match record {
                Some(_) => {
                    kept.bytes.extend_from_slice(raw);
                    kept.count += 1;
                }
                None => damaged += 1,
            }
        }
        (kept, damaged)
    }
}

/// How a record's texts are read.
#[derive(Debug, Clone, Copy)]
enum Texts {
    /// Checked to be UTF-8: bytes from outside (the spool on disk).
    Checked,
    /// Taken as they are: a [`UsageBytes`]' own bytes, every record of which was written by
    /// `push` from `&str`s or kept by `read` after its texts were checked. Checking them again
    /// on every pass was a fifth of the coordinator's time under governed load (each batch is
    /// read twice: usage metrics, then the flush's fold; docs/perf.md).
    Held,
}

impl Texts {
    fn read(self, bytes: &[u8]) -> Option<&str> {
        match self {
            Texts::Checked => std::str::from_utf8(bytes).ok(),
            Texts::Held => {
                debug_assert!(std::str::from_utf8(bytes).is_ok(), "a held text is UTF-8");
                // SAFETY: `Held` reads only a `UsageBytes`' own bytes (`iter`, `drop_oldest`),
                // whose records all came from `push` (texts written from `&str`s by
                // `put_str`) or from `read` (kept only when `decode` read every text, at these
                // same boundaries, as checked UTF-8); its bytes are private to this module and
                // change only by whole records (`append`, `drop_oldest`, `clear`).
                Some(unsafe { std::str::from_utf8_unchecked(bytes) })
            }
        }
    }
}

/// The next record of `records` and its bytes: `None` at the end and at a record cut short,
/// a record `None` when its payload does not read.
fn next<'a>(records: &mut Reader<'a>, texts: Texts) -> Option<(&'a [u8], Option<UsageRef<'a>>)> {
    let whole = records.bytes;
    if whole.is_empty() {
        return None;
    }
    let len = records.varint()?;
    let payload = records.take(len)?;
    let raw = &whole[..whole.len() - records.bytes.len()];
    Some((raw, decode(&mut Reader::new(payload), texts)))
}

fn encode(r: &UsageRef<'_>, out: &mut Vec<u8>) {
    let flags = varint::flags(&[
        (r.client_request_id.is_some(), CLIENT_ID),
        (r.key_id.is_some(), KEY),
        (r.team_id.is_some(), TEAM),
        (r.customer_id.is_some(), CUSTOMER),
        (r.error_code.is_some(), ERROR_CODE),
        (r.cache.is_some(), CACHE_HIT),
        (r.stream, STREAM),
        (r.estimated, ESTIMATED),
        (r.admitted, ADMITTED),
        (
            r.budget_generations.iter().any(Option::is_some),
            GENERATIONS,
        ),
    ]);
    put(out, flags);
    put_str(out, r.id);
    if let Some(c) = r.client_request_id {
        put_str(out, c);
    }
    put(out, r.ts_ms);
    for name in [r.key_id, r.team_id, r.customer_id].into_iter().flatten() {
        put_str(out, name);
    }
    put_str(out, r.provider);
    put_str(out, r.model);
    for n in [
        u64::from(r.status),
        r.usage.prompt,
        r.usage.completion,
        r.usage.cached,
        r.cost.nanos(),
        r.latency_us,
        r.overhead_us,
    ] {
        put(out, n);
    }
    if let Some(code) = r.error_code {
        put_str(out, code);
    }
    if let Some(hit) = &r.cache {
        put(out, u64::from(hit.kind == CacheKind::Semantic));
        for n in [
            hit.saved.prompt,
            hit.saved.completion,
            hit.saved.cached,
            hit.saved_cost.nanos(),
        ] {
            put(out, n);
        }
    }
    if flags & GENERATIONS != 0 {
        for g in r.budget_generations {
            put(out, g.map_or(0, |g| g + 1));
        }
    }
}

fn decode<'a>(r: &mut Reader<'a>, texts: Texts) -> Option<UsageRef<'a>> {
    let flags = r.varint()?;
    let text = |r: &mut Reader<'a>| texts.read(r.text_bytes()?);
    let text_if = |r: &mut Reader<'a>, bit: u64| -> Option<Option<&'a str>> {
        if flags & bit == 0 {
            Some(None)
        } else {
            text(r).map(Some)
        }
    };
    let id = text(r)?;
    let client_request_id = text_if(r, CLIENT_ID)?;
    let ts_ms = r.varint()?;
    let key_id = text_if(r, KEY)?;
    let team_id = text_if(r, TEAM)?;
    let customer_id = text_if(r, CUSTOMER)?;
    let provider = text(r)?;
    let model = text(r)?;
    let status = u16::try_from(r.varint()?).ok()?;
    let usage = tokens(r)?;
    let cost = NanoUsd::from_nanos(r.varint()?);
    let latency_us = r.varint()?;
    let overhead_us = r.varint()?;
    let error_code = text_if(r, ERROR_CODE)?;
    let cache = if flags & CACHE_HIT == 0 {
        None
    } else {
        let kind = match r.varint()? {
            0 => CacheKind::Exact,
            1 => CacheKind::Semantic,
            _ => return None,
        };
        Some(CacheHit {
            kind,
            saved: tokens(r)?,
            saved_cost: NanoUsd::from_nanos(r.varint()?),
        })
    };
    let mut budget_generations = [None; 3];
    if flags & GENERATIONS != 0 {
        for g in &mut budget_generations {
            *g = r.varint()?.checked_sub(1);
        }
    }
    r.bytes.is_empty().then_some(UsageRef {
        id,
        client_request_id,
        ts_ms,
        key_id,
        team_id,
        customer_id,
        provider,
        model,
        status,
        usage,
        cost,
        latency_us,
        stream: flags & STREAM != 0,
        estimated: flags & ESTIMATED != 0,
        overhead_us,
        error_code,
        admitted: flags & ADMITTED != 0,
        cache,
        budget_generations,
    })
}

fn tokens(r: &mut Reader<'_>) -> Option<TokenUsage> {
    Some(TokenUsage {
        prompt: r.varint()?,
        completion: r.varint()?,
        cached: r.varint()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UsageRecord;

    fn records(bytes: &UsageBytes) -> Vec<UsageRecord> {
        bytes.iter().map(|r| r.to_record()).collect()
    }

    fn full() -> UsageRecord {
        UsageRecord {
            id: "0123456789abcdef0123456789abcdef".into(),
            client_request_id: Some("client ✓".into()),
            ts_ms: 1_718_000_000_123,
            key_id: Some("key".into()),
            team_id: Some("team".into()),
            customer_id: Some("customer".into()),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            status: 429,
            usage: TokenUsage {
                prompt: 3,
                completion: u64::MAX,
                cached: 1,
            },
            cost: NanoUsd::from_nanos(99),
            latency_us: 1 << 40,
            stream: true,
            estimated: true,
            overhead_us: 12,
            error_code: Some("rate_limited".into()),
            admitted: false,
            cache: Some(CacheHit {
                kind: CacheKind::Semantic,
                saved: TokenUsage {
                    prompt: 1_200,
                    completion: 340,
                    cached: 1_024,
                },
                saved_cost: NanoUsd::from_nanos(9_876_543),
            }),
            budget_generations: [None; 3],
        }
    }

    fn bare() -> UsageRecord {
        let mut bare = full();
        (
            bare.client_request_id,
            bare.key_id,
            bare.team_id,
            bare.customer_id,
        ) = (None, None, None, None);
        (bare.error_code, bare.cache, bare.stream, bare.estimated) = (None, None, false, false);
        bare.admitted = true;
        bare
    }

    #[test]
    fn every_field_reads_back_and_a_record_cut_short_ends_them() {
        let mut exact = full();
        exact.cache.as_mut().unwrap().kind = CacheKind::Exact;
        // Generation 0 (a budget never reset) is told apart from none.
        let mut generations = full();
        generations.budget_generations = [Some(0), None, Some(41)];
        let written = [full(), bare(), exact, generations];
        let mut bytes = UsageBytes::default();
        for r in &written {
            bytes.push(&r.view());
        }
        assert_eq!(bytes.len(), written.len());
        assert_eq!(records(&bytes), written);
        let (read, damaged) = UsageBytes::read(bytes.as_bytes());
        assert_eq!((&read, damaged), (&bytes, 0));
        // Every cut: the whole records before it, then the end.
        let mut ends = Vec::new();
        for cut in 0..bytes.as_bytes().len() {
            let (read, damaged) = UsageBytes::read(&bytes.as_bytes()[..cut]);
            assert_eq!(damaged, 0, "cut at {cut}");
            assert_eq!(records(&read), written[..read.len()]);
            ends.push(read.len());
        }
        assert_eq!(ends.iter().max(), Some(&(written.len() - 1)));
    }

    #[test]
    fn minimal_lengths_as_an_earlier_version_wrote_them_read_too() {
        let mut padded = UsageBytes::default();
        padded.push(&full().view());
        let payload = &padded.as_bytes()[LENGTH_BYTES..];
        let mut minimal = Vec::new();
        put(&mut minimal, payload.len() as u64);
        minimal.extend_from_slice(payload);
        let (read, damaged) = UsageBytes::read(&minimal);
        assert_eq!((records(&read), damaged), (vec![full()], 0));
    }

    #[test]
    fn a_record_longer_than_its_padded_length_holds_is_written_whole() {
        let mut long = bare();
        long.id = "x".repeat(3 << 20);
        let mut bytes = UsageBytes::default();
        bytes.push(&long.view());
        bytes.push(&full().view());
        assert_eq!(records(&bytes), [long, full()]);
    }

    #[test]
    fn a_damaged_record_is_skipped_and_the_next_one_read() {
        let mut good = UsageBytes::default();
        good.push(&full().view());
        let payload = &good.as_bytes()[LENGTH_BYTES..];
        // A payload with a byte too many, and one whose cache kind is unknown.
        let too_long = [payload, &[0]].concat();
        let mut unknown_kind = payload.to_vec();
        let kind = payload.len()
            - 1
            - [1_200u64, 340, 1_024, 9_876_543]
                .iter()
                .map(|n| {
                    let mut v = Vec::new();
                    put(&mut v, *n);
                    v.len()
                })
                .sum::<usize>();
        unknown_kind[kind] = 7;
        // And one whose id is not UTF-8 (a held record's texts are taken as they are, so
        // reading must check them).
        let mut not_utf8 = payload.to_vec();
        let id = full().id;
        let at = payload
            .windows(id.len())
            .position(|w| w == id.as_bytes())
            .unwrap();
        not_utf8[at] = 0xff;
        let mut damaged = Vec::new();
        for bad in [too_long, unknown_kind, not_utf8] {
            put(&mut damaged, bad.len() as u64);
            damaged.extend_from_slice(&bad);
        }
        damaged.extend_from_slice(good.as_bytes());
        let (read, skipped) = UsageBytes::read(&damaged);
        assert_eq!((records(&read), skipped), (vec![full()], 3));
    }

    #[test]
    fn the_oldest_are_dropped_and_batches_append_in_order() {
        let mut first = UsageBytes::default();
        let mut second = UsageBytes::default();
        let ids = |b: &UsageBytes| b.iter().map(|r| r.id.to_owned()).collect::<Vec<_>>();
        for (i, batch) in [(0, &mut first), (1, &mut second)] {
            for j in 0..3 {
                let mut r = bare();
                r.id = format!("{i}-{j}");
                batch.push(&r.view());
            }
        }
        first.drop_oldest(2);
        assert_eq!(ids(&first), ["0-2"]);
        let mut all = UsageBytes::default();
        all.append(first);
        all.append(second);
        assert_eq!(all.len(), 4);
        assert_eq!(ids(&all), ["0-2", "1-0", "1-1", "1-2"]);
        all.drop_oldest(9);
        assert!(all.is_empty() && all.as_bytes().is_empty());
    }
}
