//! Many rows into one table inside a transaction, by the means that costs each backend least:
//! PostgreSQL's `COPY … FROM STDIN (FORMAT binary)` — one statement however many rows, each
//! value sent once in its binary form, no 1,280-parameter statement to parse, plan and bind
//! — and, on SQLite (in-process, where a statement costs no round trip), multi-row
//! `INSERT … VALUES (…), (…)` statements of [`ROWS_PER_STATEMENT`] rows, the rest in
//! statements of fewer rows, a power of two each.
//!
//! Rows are collected straight into the chunks those statements bind, so a batch's values
//! exist once (not once in a flat list and again per statement), and a table has at most
//! seven statement texts, each made once: SQLite's prepared-statement cache holds a few
//! compiled shapes instead of one per odd batch size (a statement of 1,260 parameters
//! compiles to ~150 kB; a shape per remainder size kept megabytes of them).

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

/// Rows for one table, `columns.len()` values each, in chunks of the sizes
/// [`chunk_sizes`] plans for the number of rows announced.
#[derive(Debug)]
pub(crate) struct BulkInsert {
    pub(crate) table: &'static str,
    pub(crate) columns: &'static [(&'static str, ColumnType)],
    chunks: Vec<Vec<Value>>,
    /// The rows each chunk holds, in order.
    sizes: Vec<usize>,
}

/// `rows` as statement sizes: full statements, then the rest as a sum of powers of two,
/// largest first (13 = 8 + 4 + 1).
fn chunk_sizes(rows: usize) -> Vec<usize> {
    let rest = rows % ROWS_PER_STATEMENT;
    let mut sizes = vec![ROWS_PER_STATEMENT; rows / ROWS_PER_STATEMENT];
    let mut bit = ROWS_PER_STATEMENT / 2;
    while bit > 0 {
        if rest & bit != 0 {
            sizes.push(bit);
        }
        bit /= 2;
    }
    sizes
}

impl BulkInsert {
    /// Room for `rows` rows.
    pub(crate) fn new(
        table: &'static str,
        columns: &'static [(&'static str, ColumnType)],
        rows: usize,
    ) -> Self {
        let sizes = chunk_sizes(rows);
        Self {
            table,
            columns,
            chunks: Vec::with_capacity(sizes.len()),
            sizes,
        }
    }

    pub(crate) fn width(&self) -> usize {
        self.columns.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Where the next row's values go (the caller adds exactly `width()` of them).
    pub(crate) fn next_row(&mut self) -> &mut Vec<Value> {
        let width = self.width();
        let chunk = self.chunks.len();
        let full = chunk == 0 || self.chunks[chunk - 1].len() >= self.sizes[chunk - 1] * width;
        if full {
            if chunk == self.sizes.len() {
                // More rows than announced: one-row statements (still a known shape).
                self.sizes.push(1);
            }
            self.chunks
                .push(Vec::with_capacity(self.sizes[chunk] * width));
        }
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }

    /// The rows, one slice of `width()` values each, in order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &[Value]> {
        let width = self.width();
        self.chunks.iter().flat_map(move |c| c.chunks(width))
    }

    /// `COPY table (columns) FROM STDIN (FORMAT binary)`.
    pub(crate) fn copy_sql(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table,
            column_list(self.columns)
        )
    }

    /// The rows as multi-row INSERT statements, one per chunk (PostgreSQL's `$n`
    /// placeholders, which [`super::Db::transaction_with_rows`] translates for SQLite).
    pub(crate) fn insert_stmts(self) -> Vec<Stmt> {
        let width = self.width();
        self.chunks
            .into_iter()
            .map(|values| {
                let rows = values.len() / width;
                Stmt::new(insert_text(self.table, self.columns, rows), values)
            })
            .collect()
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

/// The text of an INSERT of `rows` rows into `table` (up to ~10 kB of placeholders), made
/// once per table and size and kept (so that [`super::sqlite_form`] also translates it
/// once). [`chunk_sizes`] uses at most seven sizes.
fn insert_text(
    table: &'static str,
    columns: &'static [(&'static str, ColumnType)],
    rows: usize,
) -> &'static str {
    static TEXTS: LazyLock<Mutex<HashMap<(&'static str, usize), &'static str>>> =
        LazyLock::new(Mutex::default);
    let mut texts = TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    texts
        .entry((table, rows))
        .or_insert_with(|| Box::leak(insert_sql(table, columns, rows).into_boxed_str()))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    const COLUMNS: &[(&str, ColumnType)] = &[("a", ColumnType::Text), ("b", ColumnType::BigInt)];

    fn rows(n: usize) -> BulkInsert {
        let mut bulk = BulkInsert::new("t_bulk_test", COLUMNS, n);
        for i in 0..n {
            bulk.next_row()
                .extend([Value::Text(format!("r{i}")), Value::I64(i as i64)]);
        }
        bulk
    }

    #[test]
    fn statements_of_full_chunks_then_powers_of_two() {
        assert_eq!(chunk_sizes(2 * ROWS_PER_STATEMENT + 13), [64, 64, 8, 4, 1]);
        assert_eq!(chunk_sizes(ROWS_PER_STATEMENT - 1), [32, 16, 8, 4, 2, 1]);
        assert!(chunk_sizes(0).is_empty());
        let stmts = rows(ROWS_PER_STATEMENT + 3).insert_stmts();
        let shapes: Vec<usize> = stmts.iter().map(|s| s.params.len() / 2).collect();
        assert_eq!(shapes, [ROWS_PER_STATEMENT, 2, 1]);
        assert!(stmts[0]
            .sql
            .starts_with("INSERT INTO t_bulk_test (a, b) VALUES ($1, $2), ($3, $4)"));
        assert_eq!(
            stmts[1].sql,
            "INSERT INTO t_bulk_test (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            stmts[2].params,
            vec![
                Value::Text(format!("r{}", ROWS_PER_STATEMENT + 2)),
                Value::I64(ROWS_PER_STATEMENT as i64 + 2),
            ]
        );
        // Every text is made once and kept: the same size is the same text.
        let again = rows(ROWS_PER_STATEMENT + 3).insert_stmts();
        for (a, b) in stmts.iter().zip(&again) {
            assert!(matches!(a.sql, Cow::Borrowed(_)));
            assert!(std::ptr::eq(a.sql.as_ref(), b.sql.as_ref()));
        }
        assert!(rows(0).insert_stmts().is_empty());
    }

    #[test]
    fn rows_come_back_in_order_and_extra_rows_still_fit() {
        let mut bulk = rows(5);
        bulk.next_row()
            .extend([Value::Text("extra".into()), Value::I64(5)]);
        let firsts: Vec<&Value> = bulk.rows().map(|r| &r[0]).collect();
        assert_eq!(firsts.len(), 6);
        assert_eq!(firsts[5], &Value::Text("extra".into()));
        let shapes: Vec<usize> = bulk
            .insert_stmts()
            .iter()
            .map(|s| s.params.len() / 2)
            .collect();
        assert_eq!(shapes, [4, 1, 1]);
    }

    #[test]
    fn copy_statement() {
        assert_eq!(
            rows(1).copy_sql(),
            "COPY t_bulk_test (a, b) FROM STDIN (FORMAT binary)"
        );
    }
}
