//! Many rows into one table inside a transaction, by the means that costs each backend least:
//! PostgreSQL's `COPY … FROM STDIN (FORMAT binary)` — one statement however many rows, each
//! value sent once in its binary form, no 1,280-parameter statement to parse, plan and bind
//! — and, on SQLite (in-process, where a statement costs no round trip), multi-row
//! `INSERT … VALUES (…), (…)` of [`ROWS_PER_STATEMENT`] rows, whose full-size text is made
//! once per table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use super::{placeholder_groups, Stmt, Value};

/// Rows per SQLite INSERT statement (20 parameters a row for the request logs: well under
/// SQLite's 32,766 parameters).
pub const ROWS_PER_STATEMENT: usize = 64;

/// A column's type, as PostgreSQL's binary COPY must be told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    BigInt,
    Bool,
}

/// Rows for one table: `values` holds them one after another, `columns.len()` values each.
#[derive(Debug)]
pub(crate) struct BulkInsert {
    pub(crate) table: &'static str,
    pub(crate) columns: &'static [(&'static str, ColumnType)],
    pub(crate) values: Vec<Value>,
}

impl BulkInsert {
    pub(crate) fn width(&self) -> usize {
        self.columns.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `COPY table (columns) FROM STDIN (FORMAT binary)`.
    pub(crate) fn copy_sql(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table,
            column_list(self.columns)
        )
    }

    /// The rows as multi-row INSERT statements (PostgreSQL's `$n` placeholders, which
    /// [`super::Db::transaction_with_rows`] translates for SQLite).
    pub(crate) fn insert_stmts(self) -> Vec<Stmt> {
        let width = self.width();
        let rows = self.values.len() / width;
        let mut values = self.values.into_iter();
        let mut stmts = Vec::with_capacity(rows.div_ceil(ROWS_PER_STATEMENT));
        let mut left = rows;
        while left > 0 {
            let n = left.min(ROWS_PER_STATEMENT);
            let sql: Cow<'static, str> = if n == ROWS_PER_STATEMENT {
                Cow::Borrowed(full_insert(self.table, self.columns))
            } else {
                Cow::Owned(insert_sql(self.table, self.columns, n))
            };
            stmts.push(Stmt::new(sql, values.by_ref().take(n * width).collect()));
            left -= n;
        }
        stmts
    }
}

fn column_list(columns: &[(&str, ColumnType)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

fn insert_sql(table: &str, columns: &[(&str, ColumnType)], rows: usize) -> String {
    let groups = placeholder_groups(rows, columns.len());
    format!(
        "INSERT INTO {table} ({}) VALUES {groups}",
        column_list(columns)
    )
}

/// The text of a full-size INSERT into `table`: ~10 kB of placeholders, made once per table
/// and kept (so that [`super::sqlite_form`] also translates it once).
fn full_insert(
    table: &'static str,
    columns: &'static [(&'static str, ColumnType)],
) -> &'static str {
    static TEXTS: LazyLock<Mutex<HashMap<&'static str, &'static str>>> =
        LazyLock::new(Mutex::default);
    let mut texts = TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    texts.entry(table).or_insert_with(|| {
        Box::leak(insert_sql(table, columns, ROWS_PER_STATEMENT).into_boxed_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[(&str, ColumnType)] = &[("a", ColumnType::Text), ("b", ColumnType::BigInt)];

    fn rows(n: usize) -> BulkInsert {
        BulkInsert {
            table: "t_bulk_test",
            columns: COLUMNS,
            values: (0..n)
                .flat_map(|i| [Value::Text(format!("r{i}")), Value::I64(i as i64)])
                .collect(),
        }
    }

    #[test]
    fn statements_of_full_and_last_chunks() {
        let stmts = rows(ROWS_PER_STATEMENT + 2).insert_stmts();
        assert_eq!(stmts.len(), 2);
        assert!(
            matches!(stmts[0].sql, Cow::Borrowed(_)),
            "the full text is kept"
        );
        assert_eq!(stmts[0].params.len(), ROWS_PER_STATEMENT * 2);
        assert!(stmts[0]
            .sql
            .starts_with("INSERT INTO t_bulk_test (a, b) VALUES ($1, $2), ($3, $4)"));
        assert_eq!(
            stmts[1].sql,
            "INSERT INTO t_bulk_test (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            stmts[1].params,
            vec![
                Value::Text(format!("r{ROWS_PER_STATEMENT}")),
                Value::I64(ROWS_PER_STATEMENT as i64),
                Value::Text(format!("r{}", ROWS_PER_STATEMENT + 1)),
                Value::I64(ROWS_PER_STATEMENT as i64 + 1),
            ]
        );
        let again = rows(ROWS_PER_STATEMENT).insert_stmts();
        assert!(std::ptr::eq(again[0].sql.as_ref(), stmts[0].sql.as_ref()));
        assert!(rows(0).insert_stmts().is_empty());
    }

    #[test]
    fn copy_statement() {
        assert_eq!(
            rows(1).copy_sql(),
            "COPY t_bulk_test (a, b) FROM STDIN (FORMAT binary)"
        );
    }
}
