//! The store's error type.

use crate::secrets::SecretError;

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error reported by SQLite.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An error reported by PostgreSQL or the connection to it.
    #[error("postgres: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// Could not get a connection from the PostgreSQL pool.
    #[error("postgres pool: {}", with_causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The first connection to PostgreSQL failed (address, credentials, TLS).
    #[error("cannot connect to PostgreSQL at {target}: {}", connect_cause(source))]
    Connect {
        /// Hosts, ports and TLS settings tried, without credentials.
        target: String,
        /// What the pool reported.
        source: deadpool_postgres::PoolError,
    },
    /// The PostgreSQL pool could not be built.
    #[error("postgres pool setup: {0}")]
    PoolSetup(#[from] deadpool_postgres::BuildError),
    /// The addressed entity does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// Entity kind (`customer`, `team`, `key`, `provider`).
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A unique constraint was violated (duplicate id, name or key hash).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The entity cannot be deleted because other entities reference it
    /// (a team that still has keys, a customer that still has teams).
    #[error("{kind} {id:?} is still referenced by other entities")]
    InUse {
        /// Entity kind.
        kind: &'static str,
        /// The id that could not be deleted.
        id: String,
    },
    /// A create/update referenced an entity that does not exist
    /// (e.g. a key for an unknown team).
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// A numeric value does not fit the database's signed 64-bit integers.
    #[error("value out of range for {0}")]
    OutOfRange(&'static str),
    /// Encryption or decryption of a provider secret failed.
    #[error("secret: {0}")]
    Secret(#[from] SecretError),
    /// A provider secret must be stored or read but the store has no
    /// [`SecretBox`](crate::SecretBox).
    #[error("provider secrets need a secret key (set RINGGATE_SECRET_KEY)")]
    NoSecretKey,
    /// A stored value could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Invalid store configuration (URL, schema name, …).
    #[error("configuration: {0}")]
    Config(String),
    /// A migration failed to apply.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// Migration version number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// The underlying error.
        source: Box<Error>,
    },
    /// The blocking SQLite task panicked or was cancelled.
    #[error("background task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// `error: cause: cause…`. tokio-postgres keeps the reason of a failure (the server's
/// message, the TLS alert, the certificate problem) in its source, out of its `Display`, so
/// without this an operator would read only "db error" or "error performing TLS handshake".
/// A cause whose text is already shown is skipped (deadpool repeats its inner error's).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Why the pool could not connect: the backend's own error when there is one, without the
/// pool's "Error occurred while creating a new object" in front.
fn connect_cause(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => with_causes(e),
        other => with_causes(other),
    }
}

/// Shorthand for `Result<T, store::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of constraint a database error reports, independent of backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Constraint {
    Unique,
    ForeignKey,
}

impl Error {
    /// The database could not be reached or went away (not: it refused the statement). A
    /// caller may retry once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Pool(_) | Error::Connect { .. } => true,
            Error::Postgres(e) => {
                e.is_closed()
                    || e.code().is_some_and(|c| {
                        c.code().starts_with("08") // connection exception
                            || *c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN
                            || *c == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
                    })
                    || (e.code().is_none() && std::error::Error::source(e).is_some())
            }
            _ => false,
        }
    }

    /// The violated constraint, if this is a constraint violation.
    pub(crate) fn constraint(&self) -> Option<Constraint> {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, msg)) => match e.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Some(Constraint::Unique),
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Constraint::ForeignKey),
                // With RETURNING, SQLite reports a failed foreign-key check
                // as a generic/trigger constraint; its message is stable.
                _ if e.code == rusqlite::ErrorCode::ConstraintViolation => match msg.as_deref() {
                    Some(m) if m.starts_with("FOREIGN KEY") => Some(Constraint::ForeignKey),
                    Some(m) if m.starts_with("UNIQUE") => Some(Constraint::Unique),
                    _ => None,
                },
                _ => None,
            },
            Error::Postgres(e) => match e.code() {
                Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                    Some(Constraint::Unique)
                }
                Some(c) if *c == tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION => {
                    Some(Constraint::ForeignKey)
                }
                _ => None,
            },
            _ => None,
        }
    }
}
