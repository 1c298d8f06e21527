//! A thin backend-neutral SQL layer: parameter values, owned rows, and
//! statements written once in PostgreSQL syntax and translated for SQLite.
//!
//! SQL is written with `$N` placeholders, `GREATEST(`/`LEAST(` and
//! `CAST(x AS BIGINT)`. For SQLite, `$N` becomes `?N` and
//! `GREATEST(`/`LEAST(` become the multi-argument scalar `MAX(`/`MIN(`
//! (see [`sqlite_sql`]). Everything else used by the store (UPSERT with
//! `ON CONFLICT … DO UPDATE`, `RETURNING`, `excluded.`) is common to both.

pub(crate) mod bulk;
pub(crate) mod pg_tls;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::error::{Error, Result};

/// A bound parameter or a fetched column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    I64(i64),
    Text(String),
    Bool(bool),
    /// SQLite `BLOB`, PostgreSQL `BYTEA`.
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Converts an unsigned quantity to the database's BIGINT.
pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::OutOfRange(what))
}

/// Converts an optional unsigned quantity to a nullable BIGINT value.
pub(crate) fn opt_u64(v: Option<u64>, what: &'static str) -> Result<Value> {
    Ok(match v {
        Some(v) => Value::I64(to_i64(v, what)?),
        None => Value::Null,
    })
}

/// One fetched row, detached from the backend.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Corrupt(format!("missing column {i}")))
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::I64(v) => Ok(Some(*v)),
            other => Err(Error::Corrupt(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?
            .ok_or_else(|| Error::Corrupt(format!("column {i}: unexpected NULL")))
    }

    pub(crate) fn opt_u64(&self, i: usize) -> Result<Option<u64>> {
        self.opt_i64(i)?
            .map(|v| {
                u64::try_from(v).map_err(|_| Error::Corrupt(format!("column {i}: negative {v}")))
            })
            .transpose()
    }

    pub(crate) fn u64(&self, i: usize) -> Result<u64> {
        self.opt_u64(i)?
            .ok_or_else(|| Error::Corrupt(format!("column {i}: unexpected NULL")))
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            other => Err(Error::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| Error::Corrupt(format!("column {i}: unexpected NULL")))
    }

    pub(crate) fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b)),
            other => Err(Error::Corrupt(format!(
                "column {i}: expected bytes, got {other:?}"
            ))),
        }
    }

    pub(crate) fn bytes(&self, i: usize) -> Result<&[u8]> {
        self.opt_bytes(i)?
            .ok_or_else(|| Error::Corrupt(format!("column {i}: unexpected NULL")))
    }

    /// Takes the bytes out of column `i` (left empty), to keep a large value without a copy.
    pub(crate) fn take_bytes(&mut self, i: usize) -> Result<Vec<u8>> {
        self.bytes(i)?;
        match self.0.get_mut(i) {
            Some(Value::Bytes(b)) => Ok(std::mem::take(b)),
            _ => Err(Error::Corrupt(format!("missing column {i}"))),
        }
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool> {
        match self.at(i)? {
            Value::Bool(b) => Ok(*b),
            // SQLite stores booleans as 0/1.
            Value::I64(v) => Ok(*v != 0),
            other => Err(Error::Corrupt(format!(
                "column {i}: expected boolean, got {other:?}"
            ))),
        }
    }
}

/// A statement and its parameters, for [`Db::transaction`]. Its text is borrowed when the
/// program holds it for good (a literal, or a text built once and kept): such texts are
/// neither copied per statement nor translated for SQLite more than once ([`sqlite_form`]).
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) params: Vec<Value>,
}

impl Stmt {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Value>) -> Self {
        Self {
            sql: sql.into(),
            params,
        }
    }
}

/// The statements in SQLite's dialect.
pub(crate) fn sqlite_stmts(stmts: Vec<Stmt>) -> Vec<Stmt> {
    stmts
        .into_iter()
        .map(|s| Stmt::new(sqlite_form(s.sql), s.params))
        .collect()
}

/// The SQLite text of a statement. A `'static` text is translated the first time it is seen
/// and remembered by its address and length (it lives as long as the program, so neither is
/// ever reused by another text); the memory this keeps is bounded by the program's distinct
/// statement texts. Other texts are translated each time.
fn sqlite_form(sql: Cow<'static, str>) -> Cow<'static, str> {
    static FORMS: LazyLock<Mutex<HashMap<(usize, usize), &'static str>>> =
        LazyLock::new(Mutex::default);
    match sql {
        Cow::Borrowed(text) => {
            let mut forms = FORMS.lock().unwrap_or_else(PoisonError::into_inner);
            Cow::Borrowed(
                forms
                    .entry((text.as_ptr() as usize, text.len()))
                    .or_insert_with(|| Box::leak(sqlite_sql(text).into_boxed_str())),
            )
        }
        Cow::Owned(text) => Cow::Owned(sqlite_sql(&text)),
    }
}

/// Translates PostgreSQL-flavoured store SQL into SQLite SQL, in one pass (three
/// `str::replace` passes over the ~10 kB multi-row statements request logs once used were a
/// visible part of the coordinator's time per logged request, docs/perf.md).
pub(crate) fn sqlite_sql(sql: &str) -> String {
    const RENAMED: [(&str, &str); 2] = [("GREATEST(", "MAX("), ("LEAST(", "MIN(")];
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(['$', 'G', 'L']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(tail) = rest.strip_prefix('$') {
            out.push('?');
            rest = tail;
        } else if let Some((pg, lite)) = RENAMED.iter().find(|(pg, _)| rest.starts_with(pg)) {
            out.push_str(lite);
            rest = &rest[pg.len()..];
        } else {
            out.push_str(&rest[..1]);
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The open database.
pub(crate) enum Db {
    Sqlite(sqlite::SqliteDb),
    Postgres(Box<postgres::PgDb>),
}

impl Db {
    /// Runs one statement (autocommit) and returns its rows.
    pub(crate) async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        match self {
            Db::Sqlite(db) => db.query(sqlite_sql(sql), params).await,
            Db::Postgres(db) => db.query(sql, &params).await,
        }
    }

    /// Runs one statement (autocommit) and returns the affected row count.
    pub(crate) async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        match self {
            Db::Sqlite(db) => db.execute(sqlite_sql(sql), params).await,
            Db::Postgres(db) => db.execute(sql, &params).await,
        }
    }

    /// Runs the statements in one transaction; returns each one's rows.
    pub(crate) async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>> {
        match self {
            Db::Sqlite(db) => db.transaction(sqlite_stmts(stmts), false).await,
            Db::Postgres(db) => db.transaction(&stmts, None).await,
        }
    }
}

/// `($1, …, $cols), ($cols+1, …), …` for a multi-row statement of `rows` rows of `cols`
/// parameters each (both backends read `$n`).
pub(crate) fn placeholder_groups(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let ph = (1..=cols)
                .map(|c| format!("${}", r * cols + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({ph})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation() {
        assert_eq!(
            sqlite_sql("SELECT GREATEST(0, LEAST($1, $12)) WHERE a = $2"),
            "SELECT MAX(0, MIN(?1, ?12)) WHERE a = ?2"
        );
        assert_eq!(
            sqlite_sql("SELECT GROUP_CONCAT(x), LENGTH(y) FROM t LIMIT $3 -- GREATEST"),
            "SELECT GROUP_CONCAT(x), LENGTH(y) FROM t LIMIT ?3 -- GREATEST"
        );
        assert_eq!(sqlite_sql("ÉG$1L"), "ÉG?1L");
    }

    #[test]
    fn static_texts_are_translated_once() {
        const TEXT: &str = "SELECT GREATEST($1, 0)";
        let first = sqlite_form(Cow::Borrowed(TEXT));
        let again = sqlite_form(Cow::Borrowed(TEXT));
        assert_eq!(first, "SELECT MAX(?1, 0)");
        assert!(
            matches!((&first, &again), (Cow::Borrowed(a), Cow::Borrowed(b)) if std::ptr::eq(*a, *b))
        );
        let owned = sqlite_form(Cow::Owned(TEXT.to_owned()));
        assert!(matches!(owned, Cow::Owned(ref t) if t == "SELECT MAX(?1, 0)"));
    }

    #[test]
    fn row_accessors() {
        let r = Row(vec![
            Value::I64(5),
            Value::Null,
            Value::Text("x".into()),
            Value::I64(-1),
            Value::Bool(true),
            Value::Bytes(vec![0, 255]),
        ]);
        assert_eq!(r.i64(0).unwrap(), 5);
        assert_eq!(r.u64(0).unwrap(), 5);
        assert_eq!(r.opt_i64(1).unwrap(), None);
        assert!(r.i64(1).is_err());
        assert_eq!(r.text(2).unwrap(), "x");
        assert!(r.u64(3).is_err());
        assert!(r.bool(4).unwrap());
        assert!(r.bool(0).unwrap());
        assert!(r.text(0).is_err());
        assert_eq!(r.bytes(5).unwrap(), [0, 255]);
        assert_eq!(r.opt_bytes(5).unwrap(), Some(&[0, 255][..]));
        assert_eq!(r.opt_bytes(1).unwrap(), None);
        assert!(r.bytes(1).is_err());
        assert!(r.bytes(2).is_err());
        assert!(r.text(5).is_err());
        let mut r = r;
        assert_eq!(r.take_bytes(5).unwrap(), vec![0, 255]);
        assert!(r.take_bytes(0).is_err());
        assert!(r.i64(9).is_err());
        assert!(to_i64(u64::MAX, "x").is_err());
    }
}
