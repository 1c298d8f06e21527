//! Formats 1 and 2 of the spool's records, JSON lines, still read from spools an older
//! version left: format 1 a named object per record, format 2 the record's fields as a JSON
//! array in a fixed order ([`Row`]). A cache hit's [`CacheHit`] is one more element at the
//! end of format 2's last group, present only for hits. This version writes format 3
//! ([`vocab::usage_bytes`]).

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use vocab::{CacheHit, CacheKind, NanoUsd, TokenUsage, UsageRecord};

/// A record's fields in format 2's order. Nested because serde's tuples stop at 16 fields.
type Row = (
    (String, Option<String>, u64),
    (Option<String>, Option<String>, Option<String>),
    (String, String, u16),
    (u64, u64, u64),
    (NanoUsd, u64, bool, bool, u64),
    Tail,
);

/// A cache hit in a format-2 line: kind, saved prompt, completion and cached tokens, saved
/// cost.
type HitRow = (CacheKind, u64, u64, u64, NanoUsd);

/// The last group of a format-2 line: `[error_code, admitted]`, and a [`HitRow`] after
/// them when the cache answered. A line without it (every line before the response cache)
/// has no hit.
struct Tail {
    error_code: Option<String>,
    admitted: bool,
    cache: Option<CacheHit>,
}

impl<'de> Deserialize<'de> for Tail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TailVisitor;
        impl<'de> Visitor<'de> for TailVisitor {
            type Value = Tail;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[error_code, admitted] and, for a cache hit, the hit")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tail, A::Error> {
                let error_code = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let admitted = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let hit: Option<HitRow> = seq.next_element::<Option<HitRow>>()?.flatten();
                let cache = hit.map(|(kind, prompt, completion, cached, saved_cost)| CacheHit {
                    kind,
                    saved: TokenUsage {
                        prompt,
                        completion,
                        cached,
                    },
                    saved_cost,
                });
                Ok(Tail {
                    error_code,
                    admitted,
                    cache,
                })
            }
        }
        d.deserialize_seq(TailVisitor)
    }
}

fn from_row(row: Row) -> UsageRecord {
    let (
        (id, client_request_id, ts_ms),
        (key_id, team_id, customer_id),
        (provider, model, status),
        (prompt, completion, cached),
        (cost, latency_us, stream, estimated, overhead_us),
        Tail {
            error_code,
            admitted,
            cache,
        },
    ) = row;
    UsageRecord {
        id,
        client_request_id,
        ts_ms,
        key_id,
        team_id,
        customer_id,
        provider,
        model,
        status,
        usage: TokenUsage {
            prompt,
            completion,
            cached,
        },
        cost,
        latency_us,
        stream,
        estimated,
        overhead_us,
        error_code,
        admitted,
        cache,
        // Written before budgets had generations: the spend counts whatever resets came since.
        budget_generations: [None; 3],
    }
}

/// One line of a spool written in `format` (1 or 2).
pub fn parse_line(format: u8, line: &str) -> serde_json::Result<UsageRecord> {
    match format {
        1 => serde_json::from_str(line),
        _ => serde_json::from_str::<Row>(line).map(from_row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_FORMAT_2: &str = r#"[["r1",null,1],["k",null,null],["p","m",200],[3,4,1],[99,1,false,false,0],["rate_limited",false]]"#;

    #[test]
    fn format_2_lines_read_with_and_without_a_cache_hit() {
        let old = parse_line(2, OLD_FORMAT_2).unwrap();
        assert_eq!(old.cache, None);
        assert_eq!(old.error_code.as_deref(), Some("rate_limited"));
        assert_eq!(
            (old.usage.prompt, old.usage.cached, old.cost),
            (3, 1, NanoUsd::from_nanos(99))
        );
        assert!(!old.admitted);
        let explicit_null = OLD_FORMAT_2.replace("false]]", "false,null]]");
        assert_eq!(parse_line(2, &explicit_null).unwrap().cache, None);
        let hit = OLD_FORMAT_2.replace(
            r#"["rate_limited",false]"#,
            r#"[null,true,["semantic",1200,340,1024,9876543]]"#,
        );
        let hit = parse_line(2, &hit).unwrap().cache.unwrap();
        assert_eq!(hit.kind, CacheKind::Semantic);
        assert_eq!(
            (hit.saved.prompt, hit.saved.completion, hit.saved.cached),
            (1200, 340, 1024)
        );
        assert_eq!(hit.saved_cost, NanoUsd::from_nanos(9_876_543));
        let old_named = r#"{"ts_ms":1,"key_id":null,"team_id":null,"customer_id":null,
            "provider":"p","model":"m","status":200,
            "usage":{"prompt":1,"completion":2,"cached":0},"cost":3,"latency_us":4,
            "stream":false,"estimated":false}"#;
        assert_eq!(parse_line(1, old_named).unwrap().cache, None);
    }

    #[test]
    fn damaged_format_2_lines_are_refused_not_misread() {
        for bad in [
            OLD_FORMAT_2.replace(",false]]", "]]"),
            OLD_FORMAT_2.replace("false]]", "false,null,1]]"),
            OLD_FORMAT_2.replace("false]]", r#"false,["exact",1]]]"#),
            OLD_FORMAT_2.replace("false]]", r#"false,["fuzzy",1,2,3,4]]]"#),
        ] {
            assert!(parse_line(2, &bad).is_err(), "{bad}");
        }
    }
}
