//! The usage spool: every usage record reaches local disk (one JSON line, written as the
//! coordinator receives it) before the store, and leaves the disk once the store has it. A
//! process killed with `kill -9` loses nothing that was written here (the page cache survives
//! the process); a database outage fills the spool instead of dropping usage; a restart
//! replays what is left, and the store's batch ids ([`store::Store::write_batch`]) make sure
//! nothing is counted twice.
//!
//! Files: `open.jsonl` takes records as they come; at each flush it is sealed — renamed to
//! `<batch id>.jsonl` — and written to the store as one batch, then deleted. Each file starts
//! with a header line naming the node whose shares its usage settles and the format of its
//! lines. `spool.lock` keeps a second process off the same directory.
//!
//! Every governed request's record passes through here, so a line is the record's fields as
//! a JSON array in a fixed order (format 2, [`Row`]): a third of the bytes of the named form
//! (format 1, still read from spools an older version left), and as many fewer bytes to
//! serialize, copy into the page cache and free again at each flush. A cache hit's
//! [`CacheHit`] is one more element at the end of the last group, written only for hits, so
//! that format-2 lines from before the response cache still read (and the lines of requests
//! the cache did not answer are as short as they were).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use vocab::{CacheHit, CacheKind, NanoUsd, TokenUsage, UsageRecord};

const OPEN: &str = "open.jsonl";

/// A sealed batch: its id, the node it settles for, its records.
pub struct Sealed {
    pub id: String,
    pub node: Option<String>,
    pub records: Vec<UsageRecord>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    node: Option<String>,
    /// How the lines are written: 1 (no field: an older version's spool) a named object per
    /// record, 2 a [`Row`].
    #[serde(default = "named_records")]
    format: u8,
}

fn named_records() -> u8 {
    1
}

/// The format this version writes.
const FORMAT: u8 = 2;

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

/// [`Tail`] of a record, borrowing it.
struct TailOf<'a>(&'a UsageRecord);

impl Serialize for TailOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut t = s.serialize_tuple(2 + usize::from(r.cache.is_some()))?;
        t.serialize_element(&r.error_code)?;
        t.serialize_element(&r.admitted)?;
        if let Some(hit) = &r.cache {
            let saved = &hit.saved;
            let hit: HitRow = (
                hit.kind,
                saved.prompt,
                saved.completion,
                saved.cached,
                hit.saved_cost,
            );
            t.serialize_element(&hit)?;
        }
        t.end()
    }
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

/// `r` as a format-2 line, borrowing its strings.
fn row(r: &UsageRecord) -> impl Serialize + '_ {
    (
        (&r.id, &r.client_request_id, r.ts_ms),
        (&r.key_id, &r.team_id, &r.customer_id),
        (&r.provider, &r.model, r.status),
        (r.usage.prompt, r.usage.completion, r.usage.cached),
        (r.cost, r.latency_us, r.stream, r.estimated, r.overhead_us),
        TailOf(r),
    )
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
    }
}

/// One line of a spool written in `format`.
fn parse_line(format: u8, line: &str) -> serde_json::Result<UsageRecord> {
    match format {
        1 => serde_json::from_str(line),
        _ => serde_json::from_str::<Row>(line).map(from_row),
    }
}

/// This node's spool directory.
pub struct Spool {
    dir: PathBuf,
    node: Option<String>,
    open: Option<BufWriter<File>>,
    _lock: File,
}

impl Spool {
    /// Opens (creating) `dir` for this process alone; `node` is this node's fleet id.
    pub fn open(dir: &Path, node: Option<String>) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the usage spool {}: {e}", dir.display()))?;
        let lock_path = dir.join("spool.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                anyhow::anyhow!("cannot write in the usage spool {}: {e}", dir.display())
            })?;
        // SAFETY: flock(2) on a descriptor owned by `lock`, held as long as the spool lives.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            anyhow::bail!(
                "another ringgate process uses the usage spool {}: give every node its own \
                 governance.spool_dir",
                dir.display()
            );
        }
        Ok(Spool {
            dir: dir.to_owned(),
            node,
            open: None,
            _lock: lock,
        })
    }

    /// Appends records to the open file (created with its header when needed).
    pub fn append(&mut self, records: &[UsageRecord]) -> std::io::Result<()> {
        let out = match &mut self.open {
            Some(out) => out,
            None => {
                let mut out = BufWriter::new(File::create(self.dir.join(OPEN))?);
                serde_json::to_writer(
                    &mut out,
                    &Header {
                        node: self.node.clone(),
                        format: FORMAT,
                    },
                )?;
                out.write_all(b"\n")?;
                self.open.insert(out)
            }
        };
        for r in records {
            serde_json::to_writer(&mut *out, &row(r))?;
            out.write_all(b"\n")?;
        }
        // To the kernel now: a killed process loses nothing written here.
        out.flush()
    }

    /// Seals what the open file holds as batch `id`.
    pub fn seal(&mut self, id: &str) -> std::io::Result<()> {
        if let Some(mut out) = self.open.take() {
            out.flush()?;
            fs::rename(self.dir.join(OPEN), self.file(id))?;
        }
        Ok(())
    }

    /// Batch `id` is in the store.
    pub fn remove(&self, id: &str) {
        if let Err(e) = fs::remove_file(self.file(id)) {
            tracing::warn!(error = %e, batch = id, "cannot remove a written batch from the usage spool");
        }
    }

    /// Sealed batch `id`, read back from disk.
    pub fn load(&self, id: &str) -> Option<Sealed> {
        read(&self.file(id))
    }

    /// Ids of the batches that files hold and no store has confirmed (from an earlier
    /// process), oldest first; an open file left behind is sealed under `next_id()`.
    pub fn recover(&mut self, mut next_id: impl FnMut() -> String) -> Vec<String> {
        if self.dir.join(OPEN).exists() {
            let id = next_id();
            if let Err(e) = fs::rename(self.dir.join(OPEN), self.file(&id)) {
                tracing::error!(error = %e, "cannot seal the usage spool's open file");
            }
        }
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .map(|p| {
                (
                    fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    p,
                )
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| Some(path.file_stem()?.to_str()?.to_owned()))
            .collect()
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.jsonl"))
    }
}

/// One spool file; a line cut short by a crash is skipped.
fn read(path: &Path) -> Option<Sealed> {
    let id = path.file_stem()?.to_str()?.to_owned();
    let mut lines = BufReader::new(File::open(path).ok()?).lines();
    let header: Header = serde_json::from_str(&lines.next()?.ok()?).ok()?;
    let mut records = Vec::new();
    for line in lines.map_while(Result::ok) {
        match parse_line(header.format, &line) {
            Ok(r) => records.push(r),
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "skipping a damaged line of the usage spool")
            }
        }
    }
    Some(Sealed {
        id,
        node: header.node,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts_ms: u64) -> UsageRecord {
        UsageRecord {
            id: format!("r{ts_ms}"),
            client_request_id: None,
            ts_ms,
            key_id: Some("k".into()),
            team_id: None,
            customer_id: None,
            provider: "p".into(),
            model: "m".into(),
            status: 200,
            usage: vocab::TokenUsage::default(),
            cost: vocab::NanoUsd::ZERO,
            latency_us: 1,
            stream: false,
            estimated: false,
            overhead_us: 0,
            error_code: None,
            admitted: true,
            cache: None,
        }
    }

    #[test]
    fn records_round_trip_and_an_older_versions_spool_still_reads() {
        let mut full = record(7);
        full.client_request_id = Some("mine".into());
        full.team_id = Some("t".into());
        full.usage = vocab::TokenUsage {
            prompt: 3,
            completion: 4,
            cached: 1,
        };
        full.cost = vocab::NanoUsd::from_nanos(99);
        full.error_code = Some("rate_limited".into());
        full.admitted = false;
        let line = serde_json::to_string(&row(&full)).unwrap();
        let named = serde_json::to_string(&full).unwrap();
        assert!(line.len() * 2 < named.len(), "{line} vs {named}");
        let back = parse_line(FORMAT, &line).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&full).unwrap()
        );

        let dir = std::env::temp_dir().join(format!("ringgate-spool-v1-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("old.jsonl"),
            format!("{{\"node\":\"n0\"}}\n{named}\n"),
        )
        .unwrap();
        let old = read(&dir.join("old.jsonl")).unwrap();
        assert_eq!(old.node.as_deref(), Some("n0"));
        assert_eq!(
            serde_json::to_value(&old.records[0]).unwrap(),
            serde_json::to_value(&full).unwrap()
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn cache_hits_round_trip_and_lines_from_before_the_cache_still_read() {
        let mut hit = record(9);
        hit.cache = Some(CacheHit {
            kind: CacheKind::Semantic,
            saved: vocab::TokenUsage {
                prompt: 1_200,
                completion: 340,
                cached: 1_024,
            },
            saved_cost: vocab::NanoUsd::from_nanos(9_876_543),
        });
        let line = serde_json::to_string(&row(&hit)).unwrap();
        assert!(
            line.ends_with(r#"[null,true,["semantic",1200,340,1024,9876543]]]"#),
            "{line}"
        );
        let back = parse_line(FORMAT, &line).unwrap();
        assert_eq!(back.cache, hit.cache);
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&hit).unwrap()
        );
        // The named form (format 1) carries it too.
        let named = serde_json::to_string(&hit).unwrap();
        assert_eq!(parse_line(1, &named).unwrap().cache, hit.cache);

        // A record the cache did not answer is written as before the cache: read back, as a
        // line from an older version is, without a hit.
        let plain = record(10);
        let line = serde_json::to_string(&row(&plain)).unwrap();
        assert!(line.ends_with("[null,true]]"), "{line}");
        let old_format_2 = r#"[["r1",null,1],["k",null,null],["p","m",200],[3,4,1],[99,1,false,false,0],["rate_limited",false]]"#;
        let old = parse_line(FORMAT, old_format_2).unwrap();
        assert_eq!(old.cache, None);
        assert_eq!(old.error_code.as_deref(), Some("rate_limited"));
        assert!(!old.admitted);
        let explicit_null = old_format_2.replace("false]]", "false,null]]");
        assert_eq!(parse_line(FORMAT, &explicit_null).unwrap().cache, None);
        let old_named = r#"{"ts_ms":1,"key_id":null,"team_id":null,"customer_id":null,
            "provider":"p","model":"m","status":200,
            "usage":{"prompt":1,"completion":2,"cached":0},"cost":3,"latency_us":4,
            "stream":false,"estimated":false}"#;
        assert_eq!(parse_line(1, old_named).unwrap().cache, None);

        // Damage is still refused, not misread.
        for bad in [
            old_format_2.replace(",false]]", "]]"),
            old_format_2.replace("false]]", "false,null,1]]"),
            old_format_2.replace("false]]", r#"false,["exact",1]]]"#),
            old_format_2.replace("false]]", r#"false,["fuzzy",1,2,3,4]]]"#),
        ] {
            assert!(parse_line(FORMAT, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_a_killed_process_spooled_is_recovered_once_and_a_second_process_is_refused() {
        let dir = std::env::temp_dir().join(format!("ringgate-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut spool = Spool::open(&dir, Some("n1".into())).unwrap();
        assert!(Spool::open(&dir, None).is_err(), "one process a spool");
        spool.append(&[record(1), record(2)]).unwrap();
        spool.seal("b1").unwrap();
        spool.append(&[record(3)]).unwrap();
        drop(spool); // as a kill would: b1 unconfirmed, record 3 still open
        let mut again = Spool::open(&dir, Some("n2".into())).unwrap();
        let got: Vec<(String, Option<String>, usize)> = again
            .recover(|| "b2".into())
            .iter()
            .map(|id| again.load(id).unwrap())
            .map(|b| (b.id, b.node, b.records.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("b1".into(), Some("n1".into()), 2),
                ("b2".into(), Some("n1".into()), 1)
            ]
        );
        again.remove("b1");
        again.remove("b2");
        assert!(
            again.recover(|| "b3".into()).is_empty(),
            "written batches are gone"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
