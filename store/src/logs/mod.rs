//! Request logs: batched inserts, and searches newest first a page at a time.
//!
//! A batch's logs are written in one transaction with its usage ([`write_with_logs`]): on
//! PostgreSQL as a row per request by a binary `COPY` ([`crate::db::bulk`]), on SQLite as one
//! segment ([`sqlite`], [`segment`]).
//!
//! [`Store::query_request_logs`] reads the rows a [`LogQuery`] selects in the order
//! `ts_ms DESC, id DESC` (ids are unique, so this order is total) and pages by keyset: a
//! [`LogCursor`] is the `(ts_ms, id)` of the last row of a page, and the next page is the rows
//! strictly after it in that order. Paging never skips nor repeats a row, however many rows
//! share one `ts_ms`, and rows written meanwhile cannot shift it (newer rows come before the
//! cursor, not after it). Filters go to the SQL as fixed clauses with their values bound as
//! parameters; migrations 0005 to 0007 add the indexes they use. SQLite answers the same
//! queries from its segments ([`sqlite`]).

use vocab::{CacheKind, NanoUsd};

use crate::db::bulk::{BulkInsert, ColumnType};
use crate::db::{to_i64, Db, Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::model::RequestLog;
use crate::Store;

mod filter;
mod row;
mod segment;
pub(crate) mod sqlite;

pub use filter::{
    CacheFilter, InvalidCacheFilter, InvalidCursor, InvalidStatus, LogCursor, StatusFilter,
};
pub use row::LogRow;

const COLS: &str = "id, ts_ms, key_id, team_id, customer_id, provider, model, status, \
    prompt_tokens, completion_tokens, cost_nanos, latency_us, overhead_us, stream, error_code, \
    usage_estimated, client_request_id, cache, saved_tokens, saved_cost_nanos";

/// [`COLS`] with their types, in the order [`params`] writes a row's values.
const COLUMNS: &[(&str, ColumnType)] = &[
    ("id", ColumnType::Text),
    ("ts_ms", ColumnType::BigInt),
    ("key_id", ColumnType::Text),
    ("team_id", ColumnType::Text),
    ("customer_id", ColumnType::Text),
    ("provider", ColumnType::Text),
    ("model", ColumnType::Text),
    ("status", ColumnType::BigInt),
    ("prompt_tokens", ColumnType::BigInt),
    ("completion_tokens", ColumnType::BigInt),
    ("cost_nanos", ColumnType::BigInt),
    ("latency_us", ColumnType::BigInt),
    ("overhead_us", ColumnType::BigInt),
    ("stream", ColumnType::Bool),
    ("error_code", ColumnType::Text),
    ("usage_estimated", ColumnType::Bool),
    ("client_request_id", ColumnType::Text),
    ("cache", ColumnType::Text),
    ("saved_tokens", ColumnType::BigInt),
    ("saved_cost_nanos", ColumnType::BigInt),
];

fn params(log: &LogRow<'_>, out: &mut Vec<Value>) -> Result<()> {
    out.extend([
        log.id.into(),
        log.ts_ms.into(),
        log.key_id.into(),
        log.team_id.into(),
        log.customer_id.into(),
        log.provider.into(),
        log.model.into(),
        i64::from(log.status).into(),
        to_i64(log.prompt_tokens, "prompt_tokens")?.into(),
        to_i64(log.completion_tokens, "completion_tokens")?.into(),
        to_i64(log.cost_nanos, "cost_nanos")?.into(),
        to_i64(log.latency_us, "latency_us")?.into(),
        to_i64(log.overhead_us, "overhead_us")?.into(),
        log.stream.into(),
        log.error_code.into(),
        log.usage_estimated.into(),
        log.client_request_id.into(),
        log.cache.map(CacheKind::as_str).into(),
        crate::db::opt_u64(log.saved_tokens, "saved_tokens")?,
        crate::db::opt_u64(log.saved_cost_nanos, "saved_cost_nanos")?,
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
        client_request_id: r.opt_text(16)?,
        cache: r
            .opt_text(17)?
            .map(|c| CacheKind::parse(&c).ok_or_else(|| Error::Corrupt(format!("cache {c:?}"))))
            .transpose()?,
        saved_tokens: r.opt_u64(18)?,
        saved_cost_nanos: r.opt_u64(19)?.map(NanoUsd::from_nanos),
    })
}

/// The rows that COPY `logs` into PostgreSQL.
fn log_rows(logs: &[LogRow<'_>]) -> Result<BulkInsert> {
    let mut rows = BulkInsert::new("request_logs", COLUMNS, logs.len());
    for log in logs {
        params(log, rows.next_row())?;
    }
    Ok(rows)
}

/// Most rows a page holds ([`LogQuery::limit`] is clamped to `1..=MAX_PAGE`).
const MAX_PAGE: u32 = 1000;
/// Rows a page holds by default.
const DEFAULT_PAGE: u32 = 100;

/// Which request logs to read, a page at a time: every filter that is set must match (`None`
/// matches everything). Start from `LogQuery::default()`, set fields, run it with [`Store::query_request_logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The virtual key's id.
    pub key_id: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// The team's customer.
    pub customer_id: Option<String>,
    /// The provider's name.
    pub provider: Option<String>,
    /// The model name as logged (exactly; `provider/model` addressing is logged as `model`).
    pub model: Option<String>,
    /// The status returned to the client: one code, or a class.
    pub status: Option<StatusFilter>,
    /// The error code (exactly).
    pub error_code: Option<String>,
    /// Either the gateway's request id (`id`) or the client's `x-request-id`
    /// (`client_request_id`).
    pub request_id: Option<String>,
    /// Whether, or which, cache answered.
    pub cache: Option<CacheFilter>,
    /// Rows at or after this instant (Unix milliseconds, inclusive).
    pub since_ms: Option<i64>,
    /// Rows before this instant (Unix milliseconds, exclusive).
    pub until_ms: Option<i64>,
    /// Rows per page, clamped to 1..=1000 (default 100).
    pub limit: u32,
    /// Continue after this row (a previous page's [`LogPage::next_cursor`]); `None` starts
    /// with the newest row.
    pub cursor: Option<LogCursor>,
}

impl Default for LogQuery {
    fn default() -> Self {
        Self {
            key_id: None,
            team_id: None,
            customer_id: None,
            provider: None,
            model: None,
            status: None,
            error_code: None,
            request_id: None,
            cache: None,
            since_ms: None,
            until_ms: None,
            limit: DEFAULT_PAGE,
            cursor: None,
        }
    }
}

/// One page of request logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The rows, newest first (`ts_ms DESC, id DESC`).
    pub data: Vec<RequestLog>,
    /// Set when more rows follow: pass it as [`LogQuery::cursor`] (with the same filters) for
    /// the next page.
    pub next_cursor: Option<LogCursor>,
}

/// The SELECT for `q` (one row more than a page, to tell whether another follows) and its
/// parameters. Only fixed SQL text is assembled; every value is a parameter.
fn select_sql(q: &LogQuery) -> (String, Vec<Value>) {
    let mut params: Vec<Value> = Vec::new();
    let mut bind = |v: Value| {
        params.push(v);
        format!("${}", params.len())
    };
    let mut conds: Vec<String> = Vec::new();
    let exact = [
        ("key_id", &q.key_id),
        ("team_id", &q.team_id),
        ("customer_id", &q.customer_id),
        ("provider", &q.provider),
        ("model", &q.model),
        ("error_code", &q.error_code),
    ];
    for (col, v) in exact {
        if let Some(v) = v {
            conds.push(format!("{col} = {}", bind(v.into())));
        }
    }
    if let Some(status) = q.status {
        let (low, high) = status.range();
        conds.push(format!(
            "status >= {} AND status < {}",
            bind(low.into()),
            bind(high.into())
        ));
    }
    match q.cache {
        Some(CacheFilter::Kind(kind)) => {
            conds.push(format!("cache = {}", bind(kind.as_str().into())));
        }
        Some(CacheFilter::Any) => conds.push("cache IS NOT NULL".to_owned()),
        None => {}
    }
    if let Some(rid) = &q.request_id {
        let p = bind(rid.into());
        conds.push(format!("(id = {p} OR client_request_id = {p})"));
    }
    if let Some(since) = q.since_ms {
        conds.push(format!("ts_ms >= {}", bind(since.into())));
    }
    if let Some(until) = q.until_ms {
        conds.push(format!("ts_ms < {}", bind(until.into())));
    }
    if let Some(c) = &q.cursor {
        // `(ts_ms, id) < (c.ts_ms, c.id)`, with `ts_ms <= c.ts_ms` on its own so that the
        // timestamp indexes bound the scan on both backends.
        let (ts, id) = (bind(c.ts_ms.into()), bind((&c.id).into()));
        conds.push(format!("ts_ms <= {ts} AND (ts_ms < {ts} OR id < {id})"));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let fetch = i64::from(q.limit.clamp(1, MAX_PAGE)) + 1;
    let sql = format!(
        "SELECT {COLS} FROM request_logs{filter} ORDER BY ts_ms DESC, id DESC LIMIT {}",
        bind(fetch.into())
    );
    (sql, params)
}

/// Runs `stmts`, then writes `logs`, in one transaction. `yielding`: SQLite's writer lets
/// other threads run between statements ([`crate::UsageBatch::yielding`]).
pub(crate) async fn write_with_logs(
    db: &Db,
    mut stmts: Vec<Stmt>,
    logs: &[LogRow<'_>],
    yielding: bool,
) -> Result<()> {
    match db {
        Db::Sqlite(db) => {
            stmts.extend(sqlite::insert_stmts(logs)?);
            db.transaction(crate::db::sqlite_stmts(stmts), yielding)
                .await?;
        }
        Db::Postgres(db) => {
            db.transaction(&stmts, Some(&log_rows(logs)?)).await?;
        }
    }
    Ok(())
}

impl Store {
    /// Inserts the logs in one transaction (all or nothing; a duplicate id, among them or
    /// already stored, fails the batch with [`Error::Conflict`]).
    pub async fn insert_request_logs(&self, logs: &[RequestLog]) -> Result<()> {
        if logs.is_empty() {
            return Ok(());
        }
        match self.db() {
            Db::Sqlite(db) => sqlite::insert(db, logs.to_vec()).await,
            Db::Postgres(_) => {
                let rows: Vec<LogRow<'_>> = logs.iter().map(LogRow::of_log).collect();
                write_with_logs(self.db(), Vec::new(), &rows, false)
                    .await
                    .map_err(|e| match e.constraint() {
                        Some(crate::error::Constraint::Unique) => {
                            Error::Conflict("duplicate request log id".into())
                        }
                        _ => e,
                    })
            }
        }
    }

    /// One page of the logs `query` selects, newest first (`ts_ms DESC, id DESC`), starting
    /// after `query.cursor`; the page's `next_cursor` is set when more rows follow.
    pub async fn query_request_logs(&self, query: &LogQuery) -> Result<LogPage> {
        if let Db::Sqlite(db) = self.db() {
            return sqlite::query(db, query).await;
        }
        let (sql, params) = select_sql(query);
        let rows = self.db().query(&sql, params).await?;
        let mut data = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        let page = query.limit.clamp(1, MAX_PAGE) as usize;
        let next_cursor = if data.len() > page {
            data.truncate(page);
            data.last().map(LogCursor::after)
        } else {
            None
        };
        Ok(LogPage { data, next_cursor })
    }

    /// Deletes logs older than `before_ts_ms`; returns how many.
    pub async fn purge_request_logs(&self, before_ts_ms: i64) -> Result<u64> {
        if let Db::Sqlite(db) = self.db() {
            return sqlite::purge(db, before_ts_ms).await;
        }
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
    use super::filter::CURSOR_B64;
    use super::*;
    use base64::Engine as _;

    #[test]
    fn status_filters_parse() {
        assert_eq!("429".parse(), Ok(StatusFilter::Code(429)));
        assert_eq!("100".parse(), Ok(StatusFilter::Code(100)));
        assert_eq!("5xx".parse(), Ok(StatusFilter::Class(5)));
        assert_eq!("2XX".parse(), Ok(StatusFilter::Class(2)));
        for bad in [
            "",
            "4",
            "42",
            "4290",
            "099",
            "0xx",
            "4x0",
            "4xX0",
            "abc",
            "+42",
            " 429",
            "４２９",
        ] {
            assert_eq!(bad.parse::<StatusFilter>(), Err(InvalidStatus), "{bad:?}");
        }
        assert_eq!(StatusFilter::Class(4).range(), (400, 500));
        assert_eq!(StatusFilter::Code(429).range(), (429, 430));
        assert_eq!(StatusFilter::Class(5).to_string(), "5xx");
    }

    #[test]
    fn cursors_round_trip_any_id() {
        for (ts, id) in [
            (1_718_000_000_000, "0123456789abcdef0123456789abcdef"),
            (0, ""),
            (-5, "a:b:c"),
            (i64::MAX, "ünïcödé / ? & = % +"),
            (i64::MIN, "req-1"),
        ] {
            let c = LogCursor {
                ts_ms: ts,
                id: id.to_owned(),
            };
            let text = c.to_string();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "URL-safe: {text}"
            );
            assert_eq!(text.parse(), Ok(c.clone()));
            assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::json!(text));
        }
        let enc = |s: &str| CURSOR_B64.encode(s);
        for bad in [
            String::new(),
            "!!!".into(),
            "abc=".into(),
            enc("no separator"),
            enc(":id"),
            enc("12x:id"),
            enc("+12:id"),
            enc("-:id"),
            enc("99999999999999999999:id"),
            CURSOR_B64.encode([0xff, b'1', b':', b'x']),
        ] {
            assert_eq!(bad.parse::<LogCursor>(), Err(InvalidCursor), "{bad:?}");
        }
    }

    #[test]
    fn select_binds_every_value() {
        let (sql, params) = select_sql(&LogQuery::default());
        assert_eq!(
            sql,
            format!("SELECT {COLS} FROM request_logs ORDER BY ts_ms DESC, id DESC LIMIT $1")
        );
        assert_eq!(params, vec![Value::I64(101)]);

        let nasty = "x' OR '1'='1";
        let q = LogQuery {
            key_id: Some(nasty.into()),
            model: Some("openai/gpt-4o".into()),
            status: Some(StatusFilter::Class(4)),
            request_id: Some("r".into()),
            since_ms: Some(10),
            until_ms: Some(20),
            limit: 5000,
            cursor: Some(LogCursor {
                ts_ms: 15,
                id: nasty.into(),
            }),
            ..LogQuery::default()
        };
        let (sql, params) = select_sql(&q);
        assert!(!sql.contains(nasty), "{sql}");
        assert_eq!(
            sql,
            format!(
                "SELECT {COLS} FROM request_logs WHERE key_id = $1 AND model = $2 \
                 AND status >= $3 AND status < $4 AND (id = $5 OR client_request_id = $5) \
                 AND ts_ms >= $6 AND ts_ms < $7 AND ts_ms <= $8 AND (ts_ms < $8 OR id < $9) \
                 ORDER BY ts_ms DESC, id DESC LIMIT $10"
            )
        );
        assert_eq!(params.len(), 10);
        assert_eq!(
            params[9],
            Value::I64(1001),
            "the page is clamped to 1000, plus one"
        );
        let (_, params) = select_sql(&LogQuery {
            limit: 0,
            ..LogQuery::default()
        });
        assert_eq!(params, vec![Value::I64(2)]);
    }

    #[test]
    fn cache_filters_parse_and_bind() {
        assert_eq!("exact".parse(), Ok(CacheFilter::Kind(CacheKind::Exact)));
        assert_eq!(
            "semantic".parse(),
            Ok(CacheFilter::Kind(CacheKind::Semantic))
        );
        assert_eq!("any".parse(), Ok(CacheFilter::Any));
        for bad in ["", "Exact", "none", "all", " any"] {
            assert_eq!(
                bad.parse::<CacheFilter>(),
                Err(InvalidCacheFilter),
                "{bad:?}"
            );
        }
        for f in [
            CacheFilter::Any,
            CacheFilter::Kind(CacheKind::Exact),
            CacheFilter::Kind(CacheKind::Semantic),
        ] {
            assert_eq!(f.to_string().parse(), Ok(f));
        }
        let (sql, params) = select_sql(&LogQuery {
            cache: Some(CacheFilter::Kind(CacheKind::Semantic)),
            ..LogQuery::default()
        });
        assert!(sql.contains(" WHERE cache = $1 ORDER BY"), "{sql}");
        assert_eq!(params[0], Value::Text("semantic".into()));
        let (sql, params) = select_sql(&LogQuery {
            cache: Some(CacheFilter::Any),
            ..LogQuery::default()
        });
        assert!(sql.contains(" WHERE cache IS NOT NULL ORDER BY"), "{sql}");
        assert_eq!(params, vec![Value::I64(101)]);
    }

    #[test]
    fn rows_follow_the_columns() {
        let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names.join(", "),
            COLS.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let log = RequestLog {
            id: "a".into(),
            ts_ms: 1,
            key_id: None,
            team_id: None,
            customer_id: None,
            provider: "p".into(),
            model: "m".into(),
            status: 200,
            prompt_tokens: 2,
            completion_tokens: 3,
            cost_nanos: NanoUsd::from_nanos(4),
            latency_us: 5,
            overhead_us: 6,
            stream: true,
            error_code: None,
            usage_estimated: false,
            client_request_id: None,
            cache: None,
            saved_tokens: None,
            saved_cost_nanos: None,
        };
        let rows = log_rows(&[LogRow::of_log(&log), LogRow::of_log(&log)]).unwrap();
        assert_eq!(rows.rows().count(), 2);
        for (value, (name, ty)) in rows.rows().flatten().zip(COLUMNS) {
            let fits = matches!(
                (value, ty),
                (Value::Null, _)
                    | (Value::Text(_), ColumnType::Text)
                    | (Value::I64(_), ColumnType::BigInt)
                    | (Value::Bool(_), ColumnType::Bool)
            );
            assert!(fits, "{name}: {value:?} is not a {ty:?}");
        }
    }
}
