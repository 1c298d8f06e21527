//! The usage spool: every usage record reaches local disk (one JSON line, written as the
//! coordinator receives it) before the store, and leaves the disk once the store has it. A
//! process killed with `kill -9` loses nothing that was written here (the page cache survives
//! the process); a database outage fills the spool instead of dropping usage; a restart
//! replays what is left, and the store's batch ids ([`store::Store::write_batch`]) make sure
//! nothing is counted twice.
//!
//! Files: `open.jsonl` takes records as they come; at each flush it is sealed — renamed to
//! `<batch id>.jsonl` — and written to the store as one batch, then deleted. Each file starts
//! with a header line naming the node whose shares its usage settles. `spool.lock` keeps a
//! second process off the same directory.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vocab::UsageRecord;

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
                    },
                )?;
                out.write_all(b"\n")?;
                self.open.insert(out)
            }
        };
        for r in records {
            serde_json::to_writer(&mut *out, r)?;
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
        match serde_json::from_str(&line) {
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
