//! Request logs on SQLite: each batch is one segment ([`super::segment`]) in
//! `request_log_segments`, with its time range, the hashes of the ids it holds, and one row
//! in `request_log_terms` per distinct key, team, customer, provider, model, error code and
//! cache kind it holds (migration 0009). PostgreSQL keeps a row per request (the fleet's
//! server does that indexing off the node); both answer [`LogQuery`] the same way, which
//! `store/tests/backends/request_logs.rs` checks on both.
//!
//! A search picks the segments whose terms and time range can match, newest `max_ts`
//! first, reads their rows and keeps the best page: it stops at the first segment whose
//! newest row is older than the page's last row, so that a page of recent logs reads one or
//! two segments. A search by request id opens only the segments whose id hashes hold it.
//!
//! Log ids are unique by construction (a shard's random prefix and a sequence), so a usage
//! batch's segment is not checked against the stored ids (that would read every segment);
//! [`Store::insert_request_logs`](crate::Store::insert_request_logs) checks, as it does on
//! PostgreSQL through the primary key.

use std::collections::{BTreeSet, HashSet};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::segment;
use super::{CacheFilter, LogCursor, LogPage, LogQuery, LogRow, MAX_PAGE};
use crate::db::sqlite::{run_stmts, SqliteDb};
use crate::db::{to_i64, Stmt};
use crate::error::{Error, Result};
use crate::model::RequestLog;

const INSERT_SEGMENT: &str = "INSERT INTO request_log_segments \
    (min_ts, max_ts, row_count, rows, id_hashes) VALUES ($1, $2, $3, $4, $5)";
/// A term of the segment just inserted (the largest `seq`: the transaction holds the write
/// lock, and an `INTEGER PRIMARY KEY` takes the largest plus one).
const INSERT_TERM: &str = "INSERT INTO request_log_terms (field, value, seq) \
    VALUES ($1, $2, (SELECT max(seq) FROM request_log_segments))";

/// The fields a segment's terms name, as stored in `request_log_terms.field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Key = 1,
    Team = 2,
    Customer = 3,
    Provider = 4,
    Model = 5,
    ErrorCode = 6,
    Cache = 7,
}

/// The fields a search filters on exactly, in [`Field`]'s order.
const FIELDS: [Field; 7] = [
    Field::Key,
    Field::Team,
    Field::Customer,
    Field::Provider,
    Field::Model,
    Field::ErrorCode,
    Field::Cache,
];

/// A row's value of each of [`FIELDS`].
fn row_values<'a>(l: &LogRow<'a>) -> [Option<&'a str>; 7] {
    [
        l.key_id,
        l.team_id,
        l.customer_id,
        Some(l.provider),
        Some(l.model),
        l.error_code,
        l.cache.map(vocab::CacheKind::as_str),
    ]
}

/// The value a query asks for in each of [`FIELDS`] (`cache=any` asks for none: it is
/// matched apart).
fn query_values(q: &LogQuery) -> [Option<&str>; 7] {
    let kind = match q.cache {
        Some(CacheFilter::Kind(kind)) => Some(kind.as_str()),
        _ => None,
    };
    [
        q.key_id.as_deref(),
        q.team_id.as_deref(),
        q.customer_id.as_deref(),
        q.provider.as_deref(),
        q.model.as_deref(),
        q.error_code.as_deref(),
        kind,
    ]
}

/// Each distinct `(field, value)` the logs hold.
fn terms<'a>(logs: &[LogRow<'a>]) -> BTreeSet<(Field, &'a str)> {
    let mut out = BTreeSet::new();
    for l in logs {
        out.extend(
            FIELDS
                .into_iter()
                .zip(row_values(l))
                .filter_map(|(f, v)| Some((f, v?))),
        );
    }
    out
}

/// The statements that store `logs` as one segment (none for no logs).
pub(crate) fn insert_stmts(logs: &[LogRow<'_>]) -> Result<Vec<Stmt>> {
    let (Some(min_ts), Some(max_ts)) = (
        logs.iter().map(|l| l.ts_ms).min(),
        logs.iter().map(|l| l.ts_ms).max(),
    ) else {
        return Ok(Vec::new());
    };
    let mut stmts = vec![Stmt::new(
        INSERT_SEGMENT,
        vec![
            min_ts.into(),
            max_ts.into(),
            to_i64(logs.len() as u64, "row_count")?.into(),
            segment::encode(logs).into(),
            segment::id_hashes(logs).into(),
        ],
    )];
    stmts.extend(
        terms(logs)
            .into_iter()
            .map(|(f, v)| Stmt::new(INSERT_TERM, vec![(f as i64).into(), v.into()])),
    );
    Ok(stmts)
}

/// Whether `l` is one of the rows `q` selects (the same conditions as PostgreSQL's WHERE
/// clause, `super::select_sql`).
fn matches(q: &LogQuery, l: &LogRow<'_>) -> bool {
    query_values(q)
        .into_iter()
        .zip(row_values(l))
        .all(|(want, have)| want.is_none_or(|w| have == Some(w)))
        && q.status.is_none_or(|s| {
            let (low, high) = s.range();
            (low..high).contains(&i64::from(l.status))
        })
        && (q.cache != Some(CacheFilter::Any) || l.cache.is_some())
        && q.request_id
            .as_deref()
            .is_none_or(|r| l.id == r || l.client_request_id == Some(r))
        && q.since_ms.is_none_or(|s| l.ts_ms >= s)
        && q.until_ms.is_none_or(|u| l.ts_ms < u)
        && q.cursor
            .as_ref()
            .is_none_or(|c| (l.ts_ms, l.id) < (c.ts_ms, c.id.as_str()))
}

/// The query for the segments that can hold rows `q` selects, `(seq, max_ts)`, newest
/// `max_ts` first, and its parameters.
fn candidates(q: &LogQuery) -> (String, Vec<rusqlite::types::Value>) {
    // Plain `?` placeholders: parameters bind in the order their clauses are added.
    let mut sql = String::from("SELECT seq, max_ts FROM request_log_segments WHERE 1");
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let bounds = [
        (" AND max_ts >= ?", q.since_ms),
        (" AND min_ts < ?", q.until_ms),
        (" AND min_ts <= ?", q.cursor.as_ref().map(|c| c.ts_ms)),
    ];
    for (clause, bound) in bounds {
        if let Some(bound) = bound {
            sql.push_str(clause);
            params.push(bound.into());
        }
    }
    for (field, value) in FIELDS.into_iter().zip(query_values(q)) {
        if let Some(value) = value {
            sql.push_str(&format!(
                " AND seq IN (SELECT seq FROM request_log_terms WHERE field = {} AND value = ?)",
                field as i64
            ));
            params.push(value.to_owned().into());
        }
    }
    if q.cache == Some(CacheFilter::Any) {
        sql.push_str(&format!(
            " AND seq IN (SELECT seq FROM request_log_terms WHERE field = {})",
            Field::Cache as i64
        ));
    }
    sql.push_str(" ORDER BY max_ts DESC, seq DESC");
    (sql, params)
}

const ID_HASHES_OF: &str = "SELECT id_hashes FROM request_log_segments WHERE seq = ?1";
const ROWS_OF: &str = "SELECT rows FROM request_log_segments WHERE seq = ?1";

/// One blob of segment `seq` (`ID_HASHES_OF` or `ROWS_OF`), if the segment still exists.
fn blob_of(conn: &Connection, sql: &'static str, seq: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([seq], |r| r.get(0))
        .optional()?)
}

/// Newest first: `ts_ms DESC, id DESC`.
fn newest_first(a: &RequestLog, b: &RequestLog) -> std::cmp::Ordering {
    (b.ts_ms, &b.id).cmp(&(a.ts_ms, &a.id))
}

fn query_on(conn: &Connection, q: &LogQuery) -> Result<LogPage> {
    let page = q.limit.clamp(1, MAX_PAGE) as usize;
    // One row more than a page tells whether another page follows.
    let need = page + 1;
    let wanted_id = q.request_id.as_deref().map(segment::id_hash);
    let mut found: Vec<RequestLog> = Vec::with_capacity(need);
    let (sql, params) = candidates(q);
    let mut stmt = conn.prepare(&sql)?;
    // Read as the search goes: a page of recent rows reads a segment or two, however many
    // segments a long retention keeps.
    let mut segments = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(segment) = segments.next()? {
        let (seq, max_ts): (i64, i64) = (segment.get(0)?, segment.get(1)?);
        if found.len() == need && max_ts < found[need - 1].ts_ms {
            break; // no row of this or any later segment is newer than the page's last
        }
        if let Some(hash) = wanted_id {
            match blob_of(conn, ID_HASHES_OF, seq)? {
                Some(hashes) if segment::holds_hash(&hashes, hash) => {}
                _ => continue,
            }
        }
        let Some(bytes) = blob_of(conn, ROWS_OF, seq)? else {
            continue;
        };
        // The page's last row so far (`found` is sorted between segments): a row that does
        // not come before it cannot make the page.
        let last =
            (found.len() == need).then(|| (found[need - 1].ts_ms, found[need - 1].id.clone()));
        for view in segment::decode(&bytes)? {
            let view = view?;
            let beats_last = last
                .as_ref()
                .is_none_or(|(ts, id)| (view.ts_ms, view.id) > (*ts, id.as_str()));
            if beats_last && matches(q, &view) {
                found.push(view.to_log());
            }
        }
        found.sort_by(newest_first);
        found.truncate(need);
    }
    let next_cursor = if found.len() > page {
        found.truncate(page);
        found.last().map(LogCursor::after)
    } else {
        None
    };
    Ok(LogPage {
        data: found,
        next_cursor,
    })
}

pub(super) async fn query(db: &SqliteDb, q: &LogQuery) -> Result<LogPage> {
    let q = q.clone();
    db.with_conn(move |c| query_on(c, &q)).await
}

/// Whether any stored row has one of `ids`.
fn any_stored(conn: &Connection, ids: &HashSet<&str>) -> Result<bool> {
    let hashes: Vec<u64> = ids.iter().map(|id| segment::id_hash(id)).collect();
    let mut stmt = conn.prepare("SELECT seq, id_hashes FROM request_log_segments")?;
    let maybe: Vec<i64> = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?
        .filter_map(|row| match row {
            Ok((seq, held)) => hashes
                .iter()
                .any(|h| segment::holds_hash(&held, *h))
                .then_some(Ok(seq)),
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<_>>()?;
    for seq in maybe {
        let Some(bytes) = blob_of(conn, ROWS_OF, seq)? else {
            continue;
        };
        for view in segment::decode(&bytes)? {
            if ids.contains(view?.id) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Inserts `logs` as one segment, refused whole with [`Error::Conflict`] when an id repeats
/// within them or is already stored.
pub(super) async fn insert(db: &SqliteDb, logs: Vec<RequestLog>) -> Result<()> {
    db.with_conn(move |c| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: HashSet<&str> = logs.iter().map(|l| l.id.as_str()).collect();
        if ids.len() < logs.len() || any_stored(&tx, &ids)? {
            return Err(Error::Conflict("duplicate request log id".into()));
        }
        let rows: Vec<LogRow<'_>> = logs.iter().map(LogRow::of_log).collect();
        run_stmts(&tx, insert_stmts(&rows)?)?;
        tx.commit()?;
        Ok(())
    })
    .await
}

/// Deletes the rows older than `before_ts_ms`; returns how many. Whole segments go at once;
/// a segment that straddles the instant is written anew with the rows it keeps.
pub(super) async fn purge(db: &SqliteDb, before_ts_ms: i64) -> Result<u64> {
    db.with_conn(move |c| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let whole: i64 = tx.query_row(
            "SELECT COALESCE(SUM(row_count), 0) FROM request_log_segments WHERE max_ts < ?1",
            [before_ts_ms],
            |r| r.get(0),
        )?;
        let mut removed = u64::try_from(whole).map_err(|_| Error::Corrupt("row_count".into()))?;
        let straddling: Vec<Vec<u8>> = tx
            .prepare("SELECT rows FROM request_log_segments WHERE min_ts < ?1 AND max_ts >= ?1")?
            .query_map([before_ts_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        tx.execute(
            "DELETE FROM request_log_terms WHERE seq IN \
             (SELECT seq FROM request_log_segments WHERE min_ts < ?1)",
            [before_ts_ms],
        )?;
        tx.execute(
            "DELETE FROM request_log_segments WHERE min_ts < ?1",
            [before_ts_ms],
        )?;
        for bytes in straddling {
            let mut kept = Vec::new();
            for row in segment::decode(&bytes)? {
                let row = row?;
                if row.ts_ms >= before_ts_ms {
                    kept.push(row);
                } else {
                    removed += 1;
                }
            }
            run_stmts(&tx, insert_stmts(&kept)?)?;
        }
        tx.commit()?;
        Ok(removed)
    })
    .await
}

/// Moves the rows of the table an older version kept (`request_logs`, a row per request)
/// into segments of 2,048, then drops it. Each chunk is its own transaction, so a process
/// stopped midway resumes where it was.
pub(crate) async fn convert_legacy_rows(db: &SqliteDb) -> Result<()> {
    db.with_conn(|c| {
        let moved = convert_on(c)?;
        if moved > 0 {
            tracing::info!(rows = moved, "request logs moved into segments");
        }
        Ok(())
    })
    .await
}

fn convert_on(c: &mut Connection) -> Result<u64> {
    const CHUNK: i64 = 2048;
    let mut moved = 0;
    loop {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'request_logs'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(moved);
        }
        let sql = format!(
            "SELECT {}, rowid FROM request_logs ORDER BY rowid LIMIT ?1",
            super::COLS
        );
        let rows = crate::db::sqlite::query_on(&tx, &sql, &[CHUNK.into()])?;
        let Some(last) = rows.last() else {
            tx.execute_batch("DROP TABLE request_logs")?;
            tx.commit()?;
            return Ok(moved);
        };
        let last_rowid = last.i64(last.0.len() - 1)?;
        let logs = rows
            .iter()
            .map(super::from_row)
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<LogRow<'_>> = logs.iter().map(LogRow::of_log).collect();
        run_stmts(&tx, insert_stmts(&rows)?)?;
        tx.execute("DELETE FROM request_logs WHERE rowid <= ?1", [last_rowid])?;
        tx.commit()?;
        moved += logs.len() as u64;
    }
}
