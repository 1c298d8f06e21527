//! Versioned schema migrations, one ordered list per dialect, embedded from
//! `store/migrations/{sqlite,postgres}/NNNN_name.sql`.
//!
//! Applied versions are recorded in `schema_migrations`; pending ones run in
//! order inside one transaction at [`Store::open`](crate::Store::open)
//! (on PostgreSQL under an advisory lock so that nodes starting together
//! don't race). Never edit a released migration: add a new file and list it
//! below with the next version number, in both dialects.

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

pub(crate) static SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "governance",
        sql: include_str!("../migrations/sqlite/0001_governance.sql"),
    },
    Migration {
        version: 2,
        name: "usage_estimated",
        sql: include_str!("../migrations/sqlite/0002_usage_estimated.sql"),
    },
    Migration {
        version: 3,
        name: "cluster",
        sql: include_str!("../migrations/sqlite/0003_cluster.sql"),
    },
    Migration {
        version: 4,
        name: "usage_batches",
        sql: include_str!("../migrations/sqlite/0004_usage_batches.sql"),
    },
];

pub(crate) static POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "governance",
        sql: include_str!("../migrations/postgres/0001_governance.sql"),
    },
    Migration {
        version: 2,
        name: "usage_estimated",
        sql: include_str!("../migrations/postgres/0002_usage_estimated.sql"),
    },
    Migration {
        version: 3,
        name: "cluster",
        sql: include_str!("../migrations/postgres/0003_cluster.sql"),
    },
    Migration {
        version: 4,
        name: "usage_batches",
        sql: include_str!("../migrations/postgres/0004_usage_batches.sql"),
    },
];

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
