//! SQLite backend: one `rusqlite::Connection` behind a mutex, used from
//! `tokio::task::spawn_blocking` (WAL, `synchronous=NORMAL`, busy timeout,
//! foreign keys on).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::{Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::migrations::Migration;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::I64(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn read_row(row: &rusqlite::Row<'_>, ncols: usize) -> Result<Row> {
    let mut out = Vec::with_capacity(ncols);
    for i in 0..ncols {
        out.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::I64(v),
            ValueRef::Text(t) => Value::Text(
                std::str::from_utf8(t)
                    .map_err(|e| Error::Corrupt(e.to_string()))?
                    .to_owned(),
            ),
            ValueRef::Real(f) => return Err(Error::Corrupt(format!("unexpected REAL {f}"))),
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        });
    }
    Ok(Row(out))
}

pub(crate) fn query_on(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let ncols = stmt.column_count();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read_row(row, ncols)?);
    }
    Ok(out)
}

/// Runs statements written in PostgreSQL's dialect ([`super::sqlite_form`]) on `conn`, in
/// order (inside the caller's transaction).
pub(crate) fn run_stmts(conn: &Connection, stmts: Vec<Stmt>) -> Result<()> {
    for s in super::sqlite_stmts(stmts) {
        query_on(conn, &s.sql, &s.params)?;
    }
    Ok(())
}

/// The SQLite database handle (cheap to clone).
#[derive(Clone)]
pub(crate) struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database file and sets pragmas.
    pub(crate) async fn open(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            // 512 KiB of page cache instead of SQLite's 2 MiB default: request logs are
            // appended as segments (a batch writes new pages, it does not revisit old ones)
            // and the other tables are small, so the default held pages nothing reads again.
            conn.pragma_update(None, "cache_size", -512)?;
            conn.set_prepared_statement_cache_capacity(128);
            Ok(conn)
        })
        .await??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves no open transaction
            // (rusqlite rolls back on drop), so a poisoned lock is usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }

    pub(crate) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Vec<Row>> {
        self.with_conn(move |c| query_on(c, &sql, &params)).await
    }

    pub(crate) async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let n = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
            Ok(n as u64)
        })
        .await
    }

    /// Runs the statements in one transaction; with `yielding`, the thread gives up the CPU
    /// after each one, so that a shard woken meanwhile on the same core runs between two
    /// statements (a usage batch is ~30 of them, a few hundred µs each) rather than after
    /// the whole transaction.
    pub(crate) async fn transaction(
        &self,
        stmts: Vec<Stmt>,
        yielding: bool,
    ) -> Result<Vec<Vec<Row>>> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(stmts.len());
            for s in &stmts {
                out.push(query_on(&tx, &s.sql, &s.params)?);
                if yielding {
                    std::thread::yield_now();
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Applies pending migrations in one immediate transaction.
    pub(crate) async fn migrate(&self, migrations: &'static [Migration]) -> Result<()> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(crate::migrations::SQLITE_BOOTSTRAP)?;
            let applied: Vec<i64> = {
                let mut st = tx.prepare("SELECT version FROM schema_migrations")?;
                let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for m in migrations {
                if applied.contains(&m.version) {
                    continue;
                }
                let wrap = |e: rusqlite::Error| Error::Migration {
                    version: m.version,
                    name: m.name,
                    source: Box::new(Error::Sqlite(e)),
                };
                tx.execute_batch(m.sql).map_err(wrap)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![m.version, m.name, crate::now_unix()],
                )
                .map_err(wrap)?;
                tracing::info!(
                    version = m.version,
                    name = m.name,
                    "applied sqlite migration"
                );
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
