//! Request logs: batched inserts and recent-first reads.
//!
//! A batch is written in one transaction as multi-row `INSERT … VALUES
//! (…), (…)` statements of up to [`ROWS_PER_STATEMENT`] rows each.

use vocab::NanoUsd;

use crate::db::{to_i64, Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::model::RequestLog;
use crate::Store;

const COLS: &str = "id, ts_ms, key_id, team_id, customer_id, provider, model, status, \
    prompt_tokens, completion_tokens, cost_nanos, latency_us, overhead_us, stream, error_code, \
    usage_estimated";
const NCOLS: usize = 16;
/// Rows per INSERT statement (16 parameters each; well under both
/// backends' parameter limits).
pub const ROWS_PER_STATEMENT: usize = 64;

fn params(log: &RequestLog, out: &mut Vec<Value>) -> Result<()> {
    out.extend([
        log.id.as_str().into(),
        log.ts_ms.into(),
        log.key_id.as_deref().into(),
        log.team_id.as_deref().into(),
        log.customer_id.as_deref().into(),
        log.provider.as_str().into(),
        log.model.as_str().into(),
        i64::from(log.status).into(),
        to_i64(log.prompt_tokens, "prompt_tokens")?.into(),
        to_i64(log.completion_tokens, "completion_tokens")?.into(),
        to_i64(log.cost_nanos.nanos(), "cost_nanos")?.into(),
        to_i64(log.latency_us, "latency_us")?.into(),
        to_i64(log.overhead_us, "overhead_us")?.into(),
        log.stream.into(),
        log.error_code.as_deref().into(),
        log.usage_estimated.into(),
    ]);
    Ok(())
}

fn from_row(r: &Row) -> Result<RequestLog> {
    let status = r.i64(7)?;
    Ok(RequestLog {
        id: r.text(0)?,
        ts_ms: r.i64(1)?,
        key_id: r.opt_text(2)?,
        team_id: r.opt_text(3)?,
        customer_id: r.opt_text(4)?,
        provider: r.text(5)?,
        model: r.text(6)?,
        status: u16::try_from(status).map_err(|_| Error::Corrupt(format!("status {status}")))?,
        prompt_tokens: r.u64(8)?,
        completion_tokens: r.u64(9)?,
        cost_nanos: NanoUsd::from_nanos(r.u64(10)?),
        latency_us: r.u64(11)?,
        overhead_us: r.u64(12)?,
        stream: r.bool(13)?,
        error_code: r.opt_text(14)?,
        usage_estimated: r.bool(15)?,
    })
}

fn insert_sql(rows: usize) -> String {
    let groups = (0..rows)
        .map(|r| {
            let ph = (1..=NCOLS)
                .map(|c| format!("${}", r * NCOLS + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({ph})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO request_logs ({COLS}) VALUES {groups}")
}

/// The statements that insert `logs` (many rows a statement).
pub(crate) fn log_stmts(logs: &[RequestLog]) -> Result<Vec<Stmt>> {
    let mut stmts = Vec::new();
    for chunk in logs.chunks(ROWS_PER_STATEMENT) {
        let mut p = Vec::with_capacity(chunk.len() * NCOLS);
        for log in chunk {
            params(log, &mut p)?;
        }
        stmts.push(Stmt::new(insert_sql(chunk.len()), p));
    }
    Ok(stmts)
}

impl Store {
    /// Inserts the logs in one transaction (all or nothing; a duplicate id
    /// fails the batch with [`Error::Conflict`]).
    pub async fn insert_request_logs(&self, logs: &[RequestLog]) -> Result<()> {
        let stmts = log_stmts(logs)?;
        if stmts.is_empty() {
            return Ok(());
        }
        self.db()
            .transaction(stmts)
            .await
            .map_err(|e| match e.constraint() {
                Some(crate::error::Constraint::Unique) => {
                    Error::Conflict("duplicate request log id".into())
                }
                _ => e,
            })?;
        Ok(())
    }

    /// The `limit` most recent logs, newest first.
    pub async fn recent_request_logs(&self, limit: u32) -> Result<Vec<RequestLog>> {
        let sql = format!("SELECT {COLS} FROM request_logs ORDER BY ts_ms DESC, id DESC LIMIT $1");
        let rows = self.db().query(&sql, vec![i64::from(limit).into()]).await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes logs older than `before_ts_ms`; returns how many.
    pub async fn purge_request_logs(&self, before_ts_ms: i64) -> Result<u64> {
        self.db()
            .execute(
                "DELETE FROM request_logs WHERE ts_ms < $1",
                vec![before_ts_ms.into()],
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_sql_numbers_placeholders() {
        let sql = super::insert_sql(2);
        assert!(sql.contains("($1, $2,"));
        assert!(sql.contains("$16), ($17,"));
        assert!(sql.ends_with("$32)"));
    }
}
