//! Versioned schema migrations, one ordered list per dialect, embedded from
//! `store/migrations/{sqlite,postgres}/NNNN_name.sql`.
//!
//! Applied versions are recorded in `schema_migrations`; pending ones run in
//! order inside one transaction at [`Store::open`](crate::Store::open)
//! (on PostgreSQL under an advisory lock so that nodes starting together
//! don't race). Never edit a released migration: add a new file in both dialects and
//! list it below (one line) with the next version number.

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

pub(crate) const SQLITE_BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)";

pub(crate) const POSTGRES_BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Both dialects' lists from one table: `version "file prefix" "name"` per migration, so that a
/// new migration is one line and the dialects cannot fall out of step.
macro_rules! migrations {
    ($($version:literal $prefix:literal $name:literal),* $(,)?) => {
        pub(crate) static SQLITE: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/sqlite/", $prefix, "_", $name, ".sql")),
        }),*];
        pub(crate) static POSTGRES: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/postgres/", $prefix, "_", $name, ".sql")),
        }),*];
    };
}

migrations! {
    1 "0001" "governance",
    2 "0002" "usage_estimated",
    3 "0003" "cluster",
    4 "0004" "usage_batches",
    5 "0005" "request_log_queries",
    6 "0006" "partial_log_indexes",
    7 "0007" "response_cache",
    8 "0008" "semantic_cache",
    9 "0009" "request_log_segments",
    10 "0010" "budget_generations",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_match_files() {
        for (dialect, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dialect);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            let expected: Vec<String> = list
                .iter()
                .map(|m| format!("{:04}_{}.sql", m.version, m.name))
                .collect();
            assert_eq!(files, expected, "{dialect}: every file listed, in order");
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{dialect}: contiguous versions");
            }
        }
        assert_eq!(SQLITE.len(), POSTGRES.len(), "dialects in step");
    }
}
