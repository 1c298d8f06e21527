//! A segment: a batch's request logs as one compact byte string, as SQLite keeps them
//! (`logs/sqlite.rs`). One B-tree row per batch instead of four per request is what makes a
//! logged request cheap on the node: a row of the old table cost ~2.9 µs of SQLite's time, a
//! segment's share per request is a few tenths of that (docs/perf.md).
//!
//! Layout (format 1), every integer a LEB128 varint:
//!
//! ```text
//! format (1 byte) · string count · strings (length, UTF-8 bytes)… · row count · rows…
//! row: flags · id · [client id] · ts delta (zigzag, from the previous row; the first from 0)
//!      · [key] · [team] · [customer] · provider · model · status · prompt · completion
//!      · cost · latency · overhead · [error code] · [cache kind] · [saved tokens] · [saved cost]
//! ```
//!
//! Ids are written in full; every other text (key, team, customer, provider, model, error
//! code, cache kind) is an index into the segment's string table, so a batch of one key's
//! requests to one model stores those names once. Bracketed fields are present when the
//! row's flag says so. Reading borrows from the bytes ([`LogRow`]): a search decodes rows
//! without allocating and copies out only those it returns.

use vocab::varint::{self, put_str, unzigzag, zigzag};
use vocab::CacheKind;

use super::LogRow;
use crate::error::{Error, Result};

const FORMAT: u8 = 1;

const CLIENT_ID: u64 = 1;
const KEY: u64 = 1 << 1;
const TEAM: u64 = 1 << 2;
const CUSTOMER: u64 = 1 << 3;
const ERROR_CODE: u64 = 1 << 4;
const CACHE: u64 = 1 << 5;
const SAVED_TOKENS: u64 = 1 << 6;
const SAVED_COST: u64 = 1 << 7;
const STREAM: u64 = 1 << 8;
const ESTIMATED: u64 = 1 << 9;

/// The segment's string table while rows are written: each distinct text once, by index.
#[derive(Default)]
struct Strings<'a> {
    texts: Vec<&'a str>,
    /// The texts' indexes, once there are more than [`Strings::SCANNED`] of them.
    indexes: std::collections::HashMap<&'a str, u64>,
}

impl<'a> Strings<'a> {
    /// A batch usually holds a few distinct names (a key or two, a model): scanning them
    /// beats hashing. A batch of a thousand keys' requests would scan a thousand names per
    /// row, so past this many the texts are found by hash.
    const SCANNED: usize = 16;

    fn index(&mut self, s: &'a str) -> u64 {
        let found = if self.texts.len() <= Self::SCANNED {
            self.texts.iter().position(|t| *t == s).map(|at| at as u64)
        } else {
            if self.indexes.is_empty() {
                self.indexes = self.texts.iter().copied().zip(0..).collect();
            }
            self.indexes.get(s).copied()
        };
        found.unwrap_or_else(|| {
            let at = self.texts.len() as u64;
            self.texts.push(s);
            if !self.indexes.is_empty() {
                self.indexes.insert(s, at);
            }
            at
        })
    }
}

/// `logs` as one segment.
pub(super) fn encode<'a>(logs: &[LogRow<'a>]) -> Vec<u8> {
    let mut strings = Strings::default();
    // ~40 bytes of ids and ~20 of numbers a row; the string table is usually tiny. The rows
    // are written first and the header (which names the strings they use) put in front of
    // them at the end: one buffer a segment, not rows copied into a second one.
    let mut rows = Vec::with_capacity(logs.len() * 64 + 64);
    let mut prev_ts = 0i64;
    for l in logs {
        let flags = varint::flags(&[
            (l.client_request_id.is_some(), CLIENT_ID),
            (l.key_id.is_some(), KEY),
            (l.team_id.is_some(), TEAM),
            (l.customer_id.is_some(), CUSTOMER),
            (l.error_code.is_some(), ERROR_CODE),
            (l.cache.is_some(), CACHE),
            (l.saved_tokens.is_some(), SAVED_TOKENS),
            (l.saved_cost_nanos.is_some(), SAVED_COST),
            (l.stream, STREAM),
            (l.usage_estimated, ESTIMATED),
        ]);
        varint::put(&mut rows, flags);
        put_str(&mut rows, l.id);
        if let Some(c) = l.client_request_id {
            put_str(&mut rows, c);
        }
        varint::put(&mut rows, zigzag(l.ts_ms.wrapping_sub(prev_ts)));
        prev_ts = l.ts_ms;
        for name in [l.key_id, l.team_id, l.customer_id].into_iter().flatten() {
            varint::put(&mut rows, strings.index(name));
        }
        varint::put(&mut rows, strings.index(l.provider));
        varint::put(&mut rows, strings.index(l.model));
        for n in [
            u64::from(l.status),
            l.prompt_tokens,
            l.completion_tokens,
            l.cost_nanos,
            l.latency_us,
            l.overhead_us,
        ] {
            varint::put(&mut rows, n);
        }
        if let Some(code) = l.error_code {
            varint::put(&mut rows, strings.index(code));
        }
        if let Some(kind) = l.cache {
            varint::put(&mut rows, strings.index(kind.as_str()));
        }
        for n in [l.saved_tokens, l.saved_cost_nanos].into_iter().flatten() {
            varint::put(&mut rows, n);
        }
    }
    let mut header = vec![FORMAT];
    varint::put(&mut header, strings.texts.len() as u64);
    for s in &strings.texts {
        put_str(&mut header, s);
    }
    varint::put(&mut header, logs.len() as u64);
    rows.splice(0..0, header);
    rows
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("request-log segment: {what}"))
}

/// Reads a segment's bytes front to back; what does not read is a damaged segment.
struct Reader<'a>(varint::Reader<'a>);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        self.0.varint().ok_or_else(|| corrupt("bad varint"))
    }

    fn str(&mut self) -> Result<&'a str> {
        self.0.str().ok_or_else(|| corrupt("bad text"))
    }
}

/// The rows of a segment, in the order they were written.
pub(super) struct Rows<'a> {
    reader: Reader<'a>,
    strings: Vec<&'a str>,
    left: u64,
    prev_ts: i64,
}

/// Reads the segment `bytes`.
pub(super) fn decode(bytes: &[u8]) -> Result<Rows<'_>> {
    let (&format, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    if format != FORMAT {
        return Err(corrupt(&format!("unknown format {format}")));
    }
    let mut reader = Reader(varint::Reader::new(rest));
    let count = reader.varint()?;
    // Each string takes at least a byte: a count beyond the bytes is corrupt, not a reason
    // to reserve memory.
    if count > reader.0.bytes.len() as u64 {
        return Err(corrupt("string count"));
    }
    let strings = (0..count)
        .map(|_| reader.str())
        .collect::<Result<Vec<_>>>()?;
    let left = reader.varint()?;
    Ok(Rows {
        reader,
        strings,
        left,
        prev_ts: 0,
    })
}

impl<'a> Rows<'a> {
    fn string(&mut self) -> Result<&'a str> {
        let at = self.reader.varint()?;
        usize::try_from(at)
            .ok()
            .and_then(|at| self.strings.get(at).copied())
            .ok_or_else(|| corrupt("string index"))
    }

    fn string_if(&mut self, flags: u64, bit: u64) -> Result<Option<&'a str>> {
        if flags & bit == 0 {
            return Ok(None);
        }
        self.string().map(Some)
    }

    fn number_if(&mut self, flags: u64, bit: u64) -> Result<Option<u64>> {
        if flags & bit == 0 {
            return Ok(None);
        }
        self.reader.varint().map(Some)
    }

    fn row(&mut self) -> Result<LogRow<'a>> {
        let flags = self.reader.varint()?;
        let id = self.reader.str()?;
        let client_request_id = if flags & CLIENT_ID == 0 {
            None
        } else {
            Some(self.reader.str()?)
        };
        let ts_ms = self.prev_ts.wrapping_add(unzigzag(self.reader.varint()?));
        self.prev_ts = ts_ms;
        let key_id = self.string_if(flags, KEY)?;
        let team_id = self.string_if(flags, TEAM)?;
        let customer_id = self.string_if(flags, CUSTOMER)?;
        let provider = self.string()?;
        let model = self.string()?;
        let status = u16::try_from(self.reader.varint()?).map_err(|_| corrupt("status"))?;
        let prompt_tokens = self.reader.varint()?;
        let completion_tokens = self.reader.varint()?;
        let cost_nanos = self.reader.varint()?;
        let latency_us = self.reader.varint()?;
        let overhead_us = self.reader.varint()?;
        let error_code = self.string_if(flags, ERROR_CODE)?;
        let cache = match self.string_if(flags, CACHE)? {
            Some(kind) => Some(CacheKind::parse(kind).ok_or_else(|| corrupt("cache kind"))?),
            None => None,
        };
        Ok(LogRow {
            id,
            client_request_id,
            ts_ms,
            key_id,
            team_id,
            customer_id,
            provider,
            model,
            status,
            prompt_tokens,
            completion_tokens,
            cost_nanos,
            latency_us,
            overhead_us,
            stream: flags & STREAM != 0,
            error_code,
            usage_estimated: flags & ESTIMATED != 0,
            cache,
            saved_tokens: self.number_if(flags, SAVED_TOKENS)?,
            saved_cost_nanos: self.number_if(flags, SAVED_COST)?,
        })
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<LogRow<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let row = self.row();
        if row.is_err() {
            self.left = 0;
        }
        Some(row)
    }
}

/// A stable 64-bit hash of an id (FNV-1a): a segment lists its ids' hashes, so that a search
/// by request id opens only the segments that may hold it.
pub(super) fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The sorted hashes of the rows' ids and client ids, as little-endian bytes.
pub(super) fn id_hashes(logs: &[LogRow<'_>]) -> Vec<u8> {
    let mut hashes: Vec<u64> = logs
        .iter()
        .flat_map(|l| std::iter::once(l.id).chain(l.client_request_id))
        .map(id_hash)
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
}

/// Whether the sorted hash list `hashes` ([`id_hashes`]) holds `hash`.
pub(super) fn holds_hash(hashes: &[u8], hash: u64) -> bool {
    let n = hashes.len() / 8;
    let at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&hashes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match at(mid).cmp(&hash) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RequestLog;
    use vocab::NanoUsd;

    fn full(i: u64) -> RequestLog {
        RequestLog {
            id: format!("{i:032x}"),
            client_request_id: Some(format!("client ✓ {i}")),
            ts_ms: 1_718_000_000_000 - (i as i64) * 7,
            key_id: Some("key-1".into()),
            team_id: Some("team-1".into()),
            customer_id: Some("customer ü".into()),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            status: 429,
            prompt_tokens: u64::MAX,
            completion_tokens: 0,
            cost_nanos: NanoUsd::from_nanos(i * 1_000_000_007),
            latency_us: 1 << 40,
            overhead_us: 12,
            stream: true,
            error_code: Some("rate_limited".into()),
            usage_estimated: true,
            cache: Some(CacheKind::Semantic),
            saved_tokens: Some(77),
            saved_cost_nanos: Some(NanoUsd::from_nanos(9)),
        }
    }

    fn bare(i: u64, ts_ms: i64) -> RequestLog {
        RequestLog {
            id: format!("req-{i}"),
            client_request_id: None,
            ts_ms,
            key_id: None,
            team_id: None,
            customer_id: None,
            provider: "mock".into(),
            model: "m".into(),
            status: 200,
            prompt_tokens: 1,
            completion_tokens: 2,
            cost_nanos: NanoUsd::from_nanos(3),
            latency_us: 4,
            overhead_us: 5,
            stream: false,
            error_code: None,
            usage_estimated: false,
            cache: None,
            saved_tokens: None,
            saved_cost_nanos: None,
        }
    }

    fn rows(logs: &[RequestLog]) -> Vec<LogRow<'_>> {
        logs.iter().map(LogRow::of_log).collect()
    }

    fn round_trip(logs: &[RequestLog]) -> Vec<RequestLog> {
        let bytes = encode(&rows(logs));
        decode(&bytes)
            .unwrap()
            .map(|v| v.map(LogRow::to_log))
            .collect::<Result<_>>()
            .unwrap()
    }

    #[test]
    fn every_field_reads_back_as_written() {
        let logs: Vec<RequestLog> = (0..50)
            .map(|i| {
                if i % 3 == 0 {
                    bare(i, [i64::MIN, i64::MAX, 0, -5][(i % 4) as usize])
                } else {
                    full(i)
                }
            })
            .collect();
        assert_eq!(round_trip(&logs), logs);
        assert_eq!(round_trip(&[]), Vec::<RequestLog>::new());
    }

    #[test]
    fn names_are_stored_once_per_segment() {
        let logs: Vec<RequestLog> = (0..1000).map(full).collect();
        let bytes = encode(&rows(&logs));
        // The id (33 bytes), client id (~16) and numbers (~30, u64::MAX tokens among them)
        // are per row; names are indexes into the table.
        assert!(bytes.len() < 1000 * 90, "{} bytes", bytes.len());
        assert_eq!(bytes.windows(6).filter(|w| w == b"gpt-4o").count(), 1);
    }

    #[test]
    fn many_distinct_names_read_back_as_written() {
        // Past the names found by scanning, the table finds them by hash: same indexes.
        let logs: Vec<RequestLog> = (0..200)
            .map(|i| {
                let mut l = full(i);
                l.key_id = Some(format!("key-{}", i % 70));
                l.model = format!("model-{}", i % 3);
                l
            })
            .collect();
        assert_eq!(round_trip(&logs), logs);
    }

    #[test]
    fn damaged_segments_are_errors_not_panics() {
        let logs: Vec<RequestLog> = (0..20).map(full).collect();
        let bytes = encode(&rows(&logs));
        for cut in 0..bytes.len() {
            let read = decode(&bytes[..cut]).and_then(|rows| rows.collect::<Result<Vec<_>>>());
            assert!(read.is_err(), "cut at {cut} of {}", bytes.len());
        }
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(decode(&other).is_err());
        for i in 1..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            // Anything may come out of a flipped byte, but never a panic.
            let _ = decode(&flipped).map(|rows| rows.count());
        }
    }

    #[test]
    fn hashes_find_ids_and_client_ids() {
        let logs: Vec<RequestLog> = (0..100).map(full).collect();
        let hashes = id_hashes(&rows(&logs));
        for l in &logs {
            assert!(holds_hash(&hashes, id_hash(&l.id)));
            assert!(holds_hash(
                &hashes,
                id_hash(l.client_request_id.as_ref().unwrap())
            ));
        }
        assert!(!holds_hash(&hashes, id_hash("absent")));
        assert!(!holds_hash(&[], id_hash("absent")));
    }
}
