//! SQLite is single-node: one ringgate process per database file. Two nodes on one file would
//! each enforce every limit on their own (a limit of L admitting 2L) and race on the file, so
//! the second is refused at start with a lock beside the database.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Held for as long as the node runs: the exclusive claim on one SQLite database.
pub struct SqliteClaim {
    _file: File,
}

/// Claims `database` for this process, or says which file another node holds.
pub fn claim(database: &Path) -> anyhow::Result<SqliteClaim> {
    let mut lock = PathBuf::from(database.as_os_str());
    lock.as_mut_os_string().push(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", lock.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns; the lock lasts as long as `file`.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        anyhow::bail!(
            "another ringgate node already uses the SQLite database {} (it holds {}): SQLite is \
             single-node. Run one node per database file, or point every node of a fleet at \
             one postgres:// database (docs/cluster.md)",
            database.display(),
            lock.display()
        );
    }
    Ok(SqliteClaim { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_on_one_file_is_refused_and_the_first_can_be_retaken() {
        let dir = std::env::temp_dir().join(format!("ringgate-claim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("ringgate.db");
        let first = claim(&db).unwrap();
        let refused = claim(&db).err().expect("second claim refused").to_string();
        assert!(refused.contains("single-node"), "{refused}");
        drop(first);
        assert!(claim(&db).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
