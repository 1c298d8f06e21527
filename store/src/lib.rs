//! ringgate's storage layer.
//!
//! One [`Store`] handle (cheap to clone) over either an embedded SQLite file
//! (the default: zero setup) or PostgreSQL (for clusters). Both share one
//! logical schema, created by versioned migrations at [`Store::open`].
//!
//! It holds the governance model (customers, teams, virtual keys,
//! providers with encrypted secrets), additive usage counters per budget
//! period, request logs, cluster-wide limit leases, config-change
//! notifications and the fleet tier of the response cache ([`CachedResponse`], with the
//! semantic cache's embeddings: [`CachedEmbedding`]).
//! All methods are async (tokio); SQLite work runs on the blocking pool
//! behind a mutex.
//!
//! ```no_run
//! # async fn demo() -> store::Result<()> {
//! use store::{DatabaseConfig, SecretBox, Store};
//! let secrets = SecretBox::from_env("RINGGATE_SECRET_KEY").ok();
//! let store = Store::open(DatabaseConfig::from_url("ringgate.db"), secrets).await?;
//! let keys = store.list_keys().await?;
//! # let _ = keys; Ok(()) }
//! ```

mod cache;
pub mod cluster;
mod db;
mod error;
mod governance;
pub mod keys;
pub mod leases;
mod logs;
mod migrations;
mod model;
mod notify;
pub mod secrets;
mod usage;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

pub use cache::{CachedEmbedding, CachedResponse, SemanticKey};
pub use error::{Error, Result};
pub use logs::{
    CacheFilter, InvalidCacheFilter, InvalidCursor, InvalidStatus, LogCursor, LogPage, LogQuery,
    LogRow, StatusFilter,
};
pub use model::{
    Budget, ConfigChange, ConfigKind, CreatedKey, Customer, CustomerInput, KeyInput, LeaseCounter,
    Limits, Provider, ProviderInput, RequestLog, Team, TeamInput, Usage, UsageDelta, VirtualKey,
};
pub use notify::{
    config_channel, ConfigEvent, ConfigSubscription, CONFIG_CHANNEL, LISTEN_APPLICATION_NAME,
};
pub use secrets::{redact, SecretBox, SecretError};

use db::Db;

/// PostgreSQL connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/db[?options]` (TLS is not
    /// supported yet: use a local or tunnelled server).
    pub url: String,
    /// Maximum pooled connections (LISTEN uses one more per subscription).
    pub pool_size: usize,
    /// Optional schema to keep all tables in; created if missing and set as
    /// every connection's `search_path`. `[a-z_][a-z0-9_]*` only.
    pub schema: Option<String>,
}

impl PgOptions {
    /// Options for `url` with a pool of 8 and the default schema.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            schema: None,
        }
    }
}

/// Which database to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// An SQLite file (created if missing).
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres(PgOptions),
}

impl DatabaseConfig {
    /// `postgres://…` / `postgresql://…` selects PostgreSQL; `sqlite://PATH`
    /// or a bare path selects SQLite.
    pub fn from_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseConfig::Postgres(PgOptions::new(url))
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            DatabaseConfig::Sqlite { path: path.into() }
        }
    }
}

/// Which backend a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The storage handle. Clones share one connection (SQLite) or pool
/// (PostgreSQL).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    secrets: Option<SecretBox>,
    /// In-process config-change subscribers (SQLite only).
    local_subs: Mutex<Vec<UnboundedSender<ConfigEvent>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database and applies pending migrations. `secrets` is
    /// needed to store or read provider secrets.
    pub async fn open(config: DatabaseConfig, secrets: Option<SecretBox>) -> Result<Self> {
        let db = match config {
            DatabaseConfig::Sqlite { path } => {
                let db = db::sqlite::SqliteDb::open(&path).await?;
                db.migrate(migrations::SQLITE).await?;
                logs::sqlite::convert_legacy_rows(&db).await?;
                Db::Sqlite(db)
            }
            DatabaseConfig::Postgres(opts) => {
                let db =
                    db::postgres::PgDb::connect(&opts.url, opts.pool_size, opts.schema.as_deref())
                        .await?;
                db.migrate(migrations::POSTGRES).await?;
                Db::Postgres(Box::new(db))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                secrets,
                local_subs: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Shorthand for [`Store::open`] with an SQLite file.
    pub async fn open_sqlite(path: impl Into<PathBuf>, secrets: Option<SecretBox>) -> Result<Self> {
        Self::open(DatabaseConfig::Sqlite { path: path.into() }, secrets).await
    }

    /// Shorthand for [`Store::open`] with PostgreSQL.
    pub async fn connect_postgres(opts: PgOptions, secrets: Option<SecretBox>) -> Result<Self> {
        Self::open(DatabaseConfig::Postgres(opts), secrets).await
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.inner.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
