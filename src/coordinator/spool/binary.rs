//! Format 3 of the spool's records: each record a varint length and a compact binary
//! payload ([`vocab::varint`]). Every governed request's record is written here, and its JSON
//! line (format 2) was ~0.5 µs of the coordinator's time per request (serde_json formatting
//! numbers and escaping texts; docs/perf.md); this writes the same fields in a tenth of that.
//!
//! Payload: flags · id · [client id] · ts_ms · [key] · [team] · [customer] · provider ·
//! model · status · prompt · completion · cached · cost · latency · overhead · [error code]
//! · [cache hit: kind, saved prompt, completion and cached tokens, saved cost]. Bracketed
//! fields are present when the flags say so.

use vocab::varint::{self, put, put_str, Reader};
use vocab::{CacheHit, CacheKind, NanoUsd, TokenUsage, UsageRecord};

const CLIENT_ID: u64 = 1;
const KEY: u64 = 1 << 1;
const TEAM: u64 = 1 << 2;
const CUSTOMER: u64 = 1 << 3;
const ERROR_CODE: u64 = 1 << 4;
const CACHE_HIT: u64 = 1 << 5;
const STREAM: u64 = 1 << 6;
const ESTIMATED: u64 = 1 << 7;
const ADMITTED: u64 = 1 << 8;

/// Appends `r` as one length-prefixed record; `scratch` is reused between calls.
pub fn append(r: &UsageRecord, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
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
    ]);
    put(scratch, flags);
    put_str(scratch, &r.id);
    let texts = [&r.client_request_id, &r.key_id, &r.team_id, &r.customer_id];
    if let Some(c) = texts[0] {
        put_str(scratch, c);
    }
    put(scratch, r.ts_ms);
    for name in texts[1..].iter().copied().flatten() {
        put_str(scratch, name);
    }
    put_str(scratch, &r.provider);
    put_str(scratch, &r.model);
    for n in [
        u64::from(r.status),
        r.usage.prompt,
        r.usage.completion,
        r.usage.cached,
        r.cost.nanos(),
        r.latency_us,
        r.overhead_us,
    ] {
        put(scratch, n);
    }
    if let Some(code) = &r.error_code {
        put_str(scratch, code);
    }
    if let Some(hit) = &r.cache {
        put(scratch, u64::from(hit.kind == CacheKind::Semantic));
        for n in [
            hit.saved.prompt,
            hit.saved.completion,
            hit.saved.cached,
            hit.saved_cost.nanos(),
        ] {
            put(scratch, n);
        }
    }
    put(out, scratch.len() as u64);
    out.extend_from_slice(scratch);
}

/// The next record of `records`: `None` at the end, `Some(None)` for a record that does not
/// read (skipped), and at a record cut short (a crash while writing) the end as well.
pub fn next(records: &mut Reader<'_>) -> Option<Option<UsageRecord>> {
    if records.bytes.is_empty() {
        return None;
    }
    let len = records.varint()?;
    let payload = records.take(len)?;
    Some(decode(&mut Reader::new(payload)))
}

fn decode(r: &mut Reader<'_>) -> Option<UsageRecord> {
    let flags = r.varint()?;
    let text = |r: &mut Reader<'_>| r.str().map(str::to_owned);
    let text_if = |r: &mut Reader<'_>, bit: u64| -> Option<Option<String>> {
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
    let usage = TokenUsage {
        prompt: r.varint()?,
        completion: r.varint()?,
        cached: r.varint()?,
    };
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
            saved: TokenUsage {
                prompt: r.varint()?,
                completion: r.varint()?,
                cached: r.varint()?,
            },
            saved_cost: NanoUsd::from_nanos(r.varint()?),
        })
    };
    r.bytes.is_empty().then_some(UsageRecord {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(bytes: &[u8]) -> Vec<Option<UsageRecord>> {
        let mut reader = Reader::new(bytes);
        std::iter::from_fn(|| next(&mut reader)).collect()
    }

    fn json(r: &UsageRecord) -> serde_json::Value {
        serde_json::to_value(r).unwrap()
    }

    pub(super) fn full() -> UsageRecord {
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
        }
    }

    #[test]
    fn every_field_reads_back_and_a_record_cut_short_ends_the_file() {
        let full = full();
        let mut bare = full.clone();
        (
            bare.client_request_id,
            bare.key_id,
            bare.team_id,
            bare.customer_id,
        ) = (None, None, None, None);
        (bare.error_code, bare.cache, bare.stream, bare.estimated) = (None, None, false, false);
        bare.admitted = true;
        let mut exact = full.clone();
        exact.cache.as_mut().unwrap().kind = CacheKind::Exact;
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        for r in [&full, &bare, &exact] {
            append(r, &mut scratch, &mut out);
        }
        let back: Vec<serde_json::Value> = records(&out)
            .into_iter()
            .map(|r| json(&r.unwrap()))
            .collect();
        assert_eq!(back, [json(&full), json(&bare), json(&exact)]);
        // Every cut: the whole records before it, then the end.
        let mut ends = Vec::new();
        for cut in 0..out.len() {
            let read = records(&out[..cut]);
            assert!(read.iter().all(Option::is_some), "cut at {cut}");
            ends.push(read.len());
        }
        assert_eq!(ends.iter().max(), Some(&2));
    }

    #[test]
    fn a_damaged_record_is_skipped_and_the_next_one_read() {
        let (mut good, mut scratch) = (Vec::new(), Vec::new());
        append(&full(), &mut scratch, &mut good);
        // A payload with a byte too many, and one whose cache kind is unknown.
        let mut damaged = Vec::new();
        for bad in [[scratch.as_slice(), &[0]].concat(), {
            let mut p = scratch.clone();
            let kind = p.len()
                - 1
                - [1_200u64, 340, 1_024, 9_876_543]
                    .iter()
                    .map(|n| {
                        let mut v = Vec::new();
                        varint::put(&mut v, *n);
                        v.len()
                    })
                    .sum::<usize>();
            p[kind] = 7;
            p
        }] {
            varint::put(&mut damaged, bad.len() as u64);
            damaged.extend_from_slice(&bad);
        }
        damaged.extend_from_slice(&good);
        let read = records(&damaged);
        assert_eq!(read.len(), 3);
        assert!(read[0].is_none() && read[1].is_none());
        assert_eq!(json(read[2].as_ref().unwrap()), json(&full()));
    }
}
