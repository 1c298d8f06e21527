//! Many rows into one PostgreSQL table inside a transaction by `COPY … FROM STDIN (FORMAT
//! binary)`: one statement however many rows, each value sent once in its binary form, no
//! 1,280-parameter statement to parse, plan and bind. (SQLite keeps request logs as
//! segments, `crate::logs::sqlite`, and needs no bulk rows.)

use super::Value;

/// A column's type, as PostgreSQL's binary COPY must be told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    BigInt,
    Bool,
}

/// Rows for one table, `columns.len()` values each, in one flat list.
#[derive(Debug)]
pub(crate) struct BulkInsert {
    pub(crate) table: &'static str,
    pub(crate) columns: &'static [(&'static str, ColumnType)],
    values: Vec<Value>,
}

impl BulkInsert {
    /// Room for `rows` rows.
    pub(crate) fn new(
        table: &'static str,
        columns: &'static [(&'static str, ColumnType)],
        rows: usize,
    ) -> Self {
        Self {
            table,
            columns,
            values: Vec::with_capacity(rows * columns.len()),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Where the next row's values go (the caller adds exactly one per column).
    pub(crate) fn next_row(&mut self) -> &mut Vec<Value> {
        &mut self.values
    }

    /// The rows, one slice of a value per column each, in order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &[Value]> {
        self.values.chunks(self.columns.len())
    }

    /// `COPY table (columns) FROM STDIN (FORMAT binary)`.
    pub(crate) fn copy_sql(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table,
            names.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[(&str, ColumnType)] = &[("a", ColumnType::Text), ("b", ColumnType::BigInt)];

    #[test]
    fn rows_come_back_in_order_and_extra_rows_still_fit() {
        let mut bulk = BulkInsert::new("t_bulk_test", COLUMNS, 2);
        assert!(bulk.is_empty());
        for i in 0..3 {
            bulk.next_row()
                .extend([Value::Text(format!("r{i}")), Value::I64(i)]);
        }
        let rows: Vec<&[Value]> = bulk.rows().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], [Value::Text("r2".into()), Value::I64(2)]);
    }

    #[test]
    fn copy_statement() {
        assert_eq!(
            BulkInsert::new("t_bulk_test", COLUMNS, 1).copy_sql(),
            "COPY t_bulk_test (a, b) FROM STDIN (FORMAT binary)"
        );
    }
}
