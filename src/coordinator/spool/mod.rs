//! The usage spool: every usage record reaches local disk (written as the coordinator
//! receives it) before the store, and leaves the disk once the store has it. A process killed
//! with `kill -9` loses nothing that was written here (the page cache survives the process);
//! a database outage fills the spool instead of dropping usage; a restart replays what is
//! left, and the store's batch ids ([`store::Store::write_batch`]) make sure nothing is
//! counted twice.
//!
//! Files: `open.jsonl` takes records as they come; at each flush it is sealed — renamed to
//! `<batch id>.jsonl` — and written to the store as one batch, then deleted. Each file starts
//! with a JSON header line naming the node whose shares its usage settles and the format of
//! what follows. `spool.lock` keeps a second process off the same directory.
//!
//! Every governed request's record passes through here, so this version writes them in
//! binary (format 3: the bytes the shards sent them in, [`vocab::usage_bytes`], as they
//! came); the JSON lines older versions wrote (formats 1 and 2, [`json`]) are still read. A
//! record cut short by a crash ends the file; a damaged record or line is skipped.

mod json;

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vocab::UsageBytes;

const OPEN: &str = "open.jsonl";

/// A sealed batch: its id, the node it settles for, its records.
pub struct Sealed {
    pub id: String,
    pub node: Option<String>,
    pub records: UsageBytes,
}

#[derive(Serialize, Deserialize)]
struct Header {
    node: Option<String>,
    /// How the records are written: 1 (no field: an older version's spool) a named object
    /// per line, 2 a JSON array per line ([`json`]), 3 binary ([`vocab::usage_bytes`]).
    #[serde(default = "named_records")]
    format: u8,
}

fn named_records() -> u8 {
    1
}

/// The format this version writes.
const FORMAT: u8 = 3;

/// The file taking records, and how many bytes of it hold whole appends.
struct OpenFile {
    file: File,
    len: u64,
}

/// This node's spool directory.
pub struct Spool {
    dir: PathBuf,
    node: Option<String>,
    open: Option<OpenFile>,
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

    /// Appends records to the open file (created with its header when needed), in one write.
    /// A write that fails midway is cut off again, so that what follows is not hidden behind
    /// a partial record.
    pub fn append(&mut self, records: &UsageBytes) -> std::io::Result<()> {
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(OpenFile {
                file: File::create(self.dir.join(OPEN))?,
                len: 0,
            }),
        };
        let mut header = Vec::new();
        if open.len == 0 {
            let fields = Header {
                node: self.node.clone(),
                format: FORMAT,
            };
            serde_json::to_writer(&mut header, &fields)?;
            header.push(b'\n');
        }
        // Straight to the kernel: a killed process loses nothing written here.
        // (The header only starts a file: one write per append after it.)
        let written = open
            .file
            .write_all(&header)
            .and_then(|()| open.file.write_all(records.as_bytes()));
        if let Err(e) = written {
            let _ = open.file.set_len(open.len);
            let _ = open.file.seek(SeekFrom::Start(open.len));
            return Err(e);
        }
        open.len += (header.len() + records.as_bytes().len()) as u64;
        Ok(())
    }

    /// Seals what the open file holds as batch `id`.
    pub fn seal(&mut self, id: &str) -> std::io::Result<()> {
        if self.open.take().is_some() {
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

/// One spool file: its header, then its records in the header's format.
fn read(path: &Path) -> Option<Sealed> {
    let id = path.file_stem()?.to_str()?.to_owned();
    let bytes = fs::read(path).ok()?;
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..end]).ok()?;
    let body = &bytes[end + 1..];
    let (records, damaged) = if header.format >= 3 {
        UsageBytes::read(body)
    } else {
        let mut records = UsageBytes::default();
        let mut damaged = 0usize;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match std::str::from_utf8(line)
                .ok()
                .and_then(|l| json::parse_line(header.format, l).ok())
            {
                Some(r) => records.push(&r.view()),
                None => damaged += 1,
            }
        }
        (records, damaged)
    };
    if damaged > 0 {
        tracing::warn!(damaged, file = %path.display(), "skipping damaged records of the usage spool");
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
    use vocab::UsageRecord;

    fn bytes(records: &[UsageRecord]) -> UsageBytes {
        let mut bytes = UsageBytes::default();
        for r in records {
            bytes.push(&r.view());
        }
        bytes
    }

    fn owned(records: &UsageBytes) -> Vec<UsageRecord> {
        records.iter().map(|r| r.to_record()).collect()
    }

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
            budget_generations: [Some(1), None, None],
        }
    }

    #[test]
    fn files_of_every_format_read_back_and_a_record_cut_short_ends_the_file() {
        let dir =
            std::env::temp_dir().join(format!("ringgate-spool-formats-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut spool = Spool::open(&dir, Some("n0".into())).unwrap();
        let mut full = record(7);
        full.client_request_id = Some("mine".into());
        full.error_code = Some("rate_limited".into());
        full.admitted = false;
        spool.append(&bytes(&[full.clone(), record(8)])).unwrap();
        spool.append(&bytes(&[record(9)])).unwrap();
        spool.seal("b3").unwrap();
        let back = spool.load("b3").unwrap();
        assert_eq!(back.node.as_deref(), Some("n0"));
        assert_eq!(owned(&back.records), [full.clone(), record(8), record(9)]);
        // A crash in the middle of the last record: the ones before it are read.
        let path = dir.join("b3.jsonl");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(spool.load("b3").unwrap().records.len(), 2);

        // Spools an older version left: format 2 (a JSON array a line, one line damaged)
        // and format 1 (a named object a line, no format in the header).
        let format_2 = r#"[["r1",null,1],["k",null,null],["p","m",200],[3,4,1],[99,1,false,false,0],["rate_limited",false]]"#;
        fs::write(
            dir.join("old2.jsonl"),
            format!("{{\"node\":\"n1\",\"format\":2}}\n{format_2}\n[1,2\n{format_2}\n"),
        )
        .unwrap();
        let old = spool.load("old2").unwrap();
        assert_eq!(old.records.len(), 2);
        assert_eq!(
            old.records.iter().next().unwrap().error_code,
            Some("rate_limited")
        );
        let named = serde_json::to_string(&full).unwrap();
        fs::write(
            dir.join("old1.jsonl"),
            format!("{{\"node\":null}}\n{named}\n"),
        )
        .unwrap();
        assert_eq!(owned(&spool.load("old1").unwrap().records), [full]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_a_killed_process_spooled_is_recovered_once_and_a_second_process_is_refused() {
        let dir = std::env::temp_dir().join(format!("ringgate-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut spool = Spool::open(&dir, Some("n1".into())).unwrap();
        assert!(Spool::open(&dir, None).is_err(), "one process a spool");
        spool.append(&bytes(&[record(1), record(2)])).unwrap();
        spool.seal("b1").unwrap();
        spool.append(&bytes(&[record(3)])).unwrap();
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
