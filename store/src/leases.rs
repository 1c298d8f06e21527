//! Node shares of fleet-wide limit counters (docs/cluster.md).
//!
//! A limit's counter (`limit_counters`, one row per limit and window) says how many units of
//! the window are taken: `used` = what every live node holds (`limit_shares.held`, one row per
//! node) plus what was spent. A node asks for a share with [`Store::acquire_share`]; the
//! counter grants at most what is left, and the node's row records it. Units come back three
//! ways: the node gives unused units back ([`Store::return_share`]: `used` and `held` both
//! drop), its flushed usage settles what it spent ([`Store::add_usage_settling`]: `held` drops,
//! `used` keeps it), and when a node dies a survivor hands its whole `held` back
//! ([`Store::reap_dead_nodes`]). So `used` never counts a unit twice, and once a node's usage
//! is flushed, whatever it still held goes back to the fleet when it dies.
//!
//! The grant is one upsert; on PostgreSQL `INSERT … ON CONFLICT DO UPDATE` locks the row and
//! applies the SET to its latest committed version, so concurrent nodes serialise on the row
//! and each sees the `used` left by the previous one. All SET expressions read the old row,
//! so `last_grant` and the increment of `used` are the same number; the share row then adds
//! that `last_grant` in the same transaction (the counter row is still locked by it).
//!
//! A share shrinks as the limit nears exhaustion: a node gets at least `need` (what the shard
//! that asked needs now), at most `want`, and otherwise `left / spread` — a fraction of what
//! is left — so the last units of a limit stay reachable from every node.
//!
//! A stale node cannot raise a lowered limit: the counter keeps the limit value of the newest
//! config version that leased from it, and a node on an older version is granted against that.

use std::sync::LazyLock;

use vocab::EntityRef;

use crate::db::{to_i64, Stmt, Value};
use crate::error::{Error, Result};
use crate::model::{LeaseCounter, UsageDelta};
use crate::Store;

/// One node's request for a share of a limit's window.
#[derive(Debug, Clone)]
pub struct ShareAsk<'a> {
    pub node_id: &'a str,
    pub entity: &'a EntityRef,
    /// `rpm`, `tpd`, `budget`, … (with `#generation` after a budget reset).
    pub limit_name: &'a str,
    pub window_start: i64,
    /// The limit as the node's config says it.
    pub limit_value: u64,
    /// The config version the node's limit value comes from.
    pub config_version: u64,
    /// Granted in full if that much is left.
    pub need: u64,
    /// The most the node takes.
    pub want: u64,
    /// At most `left / spread` beyond `need` (≥ 1; about twice the live nodes).
    pub spread: u64,
}

/// One flush of a node's usage (see [`Store::write_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct UsageBatch<'a> {
    /// Unique per batch: a batch written twice counts once.
    pub id: &'a str,
    /// The node whose shares `settles` settle (a fleet node; `None` alone).
    pub node_id: Option<&'a str>,
    pub deltas: &'a [UsageDelta],
    pub settles: &'a [ShareSettle],
    pub logs: &'a [crate::LogRow<'a>],
    /// Let other threads run between the batch's statements (SQLite, whose writes run on
    /// this process's CPUs): the caller shares a core with latency-sensitive work and has
    /// no backlog, so the batch may take longer. Ignored by PostgreSQL.
    pub yielding: bool,
}

/// What a node's flushed usage settles of one of its shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSettle {
    pub entity: EntityRef,
    pub limit_name: String,
    pub window_start: i64,
    pub units: u64,
}

/// Cast placeholders: SQLite ignores the casts' type names, PostgreSQL needs them to infer
/// arithmetic on parameters.
const ACQUIRE_SQL: &str = "INSERT INTO limit_counters \
    (entity_kind, entity_id, limit_name, window_start, used, limit_value, last_grant, config_version) \
    VALUES ($1, $2, $3, $4, \
        LEAST(CAST($5 AS BIGINT), GREATEST(CAST($7 AS BIGINT), LEAST(CAST($8 AS BIGINT), CAST($5 AS BIGINT) / CAST($9 AS BIGINT)))), \
        CAST($5 AS BIGINT), \
        LEAST(CAST($5 AS BIGINT), GREATEST(CAST($7 AS BIGINT), LEAST(CAST($8 AS BIGINT), CAST($5 AS BIGINT) / CAST($9 AS BIGINT)))), \
        CAST($6 AS BIGINT)) \
    ON CONFLICT (entity_kind, entity_id, limit_name, window_start) DO UPDATE SET \
    last_grant = LEAST(LEFT_UNITS, GREATEST(CAST($7 AS BIGINT), LEAST(CAST($8 AS BIGINT), LEFT_UNITS / CAST($9 AS BIGINT)))), \
    used = limit_counters.used \
        + LEAST(LEFT_UNITS, GREATEST(CAST($7 AS BIGINT), LEAST(CAST($8 AS BIGINT), LEFT_UNITS / CAST($9 AS BIGINT)))), \
    limit_value = EFFECTIVE_LIMIT, \
    config_version = GREATEST(limit_counters.config_version, excluded.config_version) \
    RETURNING last_grant";

/// The limit in force: the newest config version's.
const EFFECTIVE_LIMIT: &str =
    "(CASE WHEN excluded.config_version >= limit_counters.config_version \
    THEN excluded.limit_value ELSE limit_counters.limit_value END)";

/// Adds this transaction's grant to the node's share (the counter row is locked by it).
const ADD_SHARE_SQL: &str = "INSERT INTO limit_shares \
    (entity_kind, entity_id, limit_name, window_start, node_id, held) \
    SELECT entity_kind, entity_id, limit_name, window_start, $5, last_grant FROM limit_counters \
    WHERE entity_kind = $1 AND entity_id = $2 AND limit_name = $3 AND window_start = $4 \
        AND last_grant > 0 \
    ON CONFLICT (entity_kind, entity_id, limit_name, window_start, node_id) \
    DO UPDATE SET held = limit_shares.held + excluded.held";

/// What a node gives back, up to what its share holds (a share already handed back by a
/// survivor, after this node was taken for dead, is not handed back twice).
const RETURN_COUNTER_SQL: &str =
    "UPDATE limit_counters SET used = GREATEST(0, used - LEAST(CAST($6 AS BIGINT), \
        COALESCE((SELECT held FROM limit_shares WHERE entity_kind = $1 AND entity_id = $2 \
            AND limit_name = $3 AND window_start = $4 AND node_id = $5), 0))) \
    WHERE entity_kind = $1 AND entity_id = $2 AND limit_name = $3 AND window_start = $4";

/// Lowers a node's `held` by `$6` (never below 0): units it gave back (with the counter,
/// [`RETURN_COUNTER_SQL`]) or spent (settled by its flushed usage; the counter keeps them).
const LOWER_HELD_SQL: &str =
    "UPDATE limit_shares SET held = held - LEAST(held, CAST($6 AS BIGINT)) \
    WHERE entity_kind = $1 AND entity_id = $2 AND limit_name = $3 AND window_start = $4 \
        AND node_id = $5";

const SEED_SQL: &str = "INSERT INTO limit_counters \
    (entity_kind, entity_id, limit_name, window_start, used, limit_value, last_grant, config_version) \
    VALUES ($1, $2, $3, $4, $5, $6, 0, 0) \
    ON CONFLICT (entity_kind, entity_id, limit_name, window_start) DO NOTHING";

/// [`ACQUIRE_SQL`] with its two named expressions written out.
static ACQUIRE: LazyLock<String> = LazyLock::new(|| {
    ACQUIRE_SQL
        .replace(
            "LEFT_UNITS",
            &format!("GREATEST(0, {EFFECTIVE_LIMIT} - limit_counters.used)"),
        )
        .replace("EFFECTIVE_LIMIT", EFFECTIVE_LIMIT)
});

/// The two statements of one share request, in order, with their `$n` parameters as
/// [`Store::acquire_share`] binds them: entity kind, entity id, limit name, window start,
/// limit value, config version, need, want, spread; then the same first four and the node id.
/// For load tests of the database itself (perf/leases.sh).
pub fn acquire_statements() -> [&'static str; 2] {
    [ACQUIRE.as_str(), ADD_SHARE_SQL]
}

fn key(entity: &EntityRef, limit_name: &str, window_start: i64) -> Vec<Value> {
    vec![
        entity.kind.as_str().into(),
        entity.id.as_str().into(),
        limit_name.into(),
        window_start.into(),
    ]
}

fn share_key(entity: &EntityRef, limit_name: &str, window_start: i64, node: &str) -> Vec<Value> {
    let mut p = key(entity, limit_name, window_start);
    p.push(node.into());
    p
}

impl Store {
    /// Grants node `ask.node_id` a share of a limit's window (see the module doc for how
    /// much); records it as the node's. Returns the units granted (0 when nothing is left).
    pub async fn acquire_share(&self, ask: &ShareAsk<'_>) -> Result<u64> {
        if ask.want == 0 && ask.need == 0 {
            return Ok(0);
        }
        let mut grant = key(ask.entity, ask.limit_name, ask.window_start);
        grant.extend([
            to_i64(ask.limit_value, "limit_value")?.into(),
            to_i64(ask.config_version, "config_version")?.into(),
            to_i64(ask.need, "need")?.into(),
            to_i64(ask.want.max(ask.need), "want")?.into(),
            to_i64(ask.spread.max(1), "spread")?.into(),
        ]);
        let out = self
            .db()
            .transaction(vec![
                Stmt::new(ACQUIRE.as_str(), grant),
                Stmt::new(
                    ADD_SHARE_SQL,
                    share_key(ask.entity, ask.limit_name, ask.window_start, ask.node_id),
                ),
            ])
            .await?;
        out.first()
            .and_then(|rows| rows.first())
            .ok_or_else(|| Error::Corrupt("lease upsert returned no row".into()))?
            .u64(0)
    }

    /// Gives back `unused` units of node `node_id`'s share (never more than it holds).
    pub async fn return_share(
        &self,
        node_id: &str,
        entity: &EntityRef,
        limit_name: &str,
        window_start: i64,
        unused: u64,
    ) -> Result<()> {
        if unused == 0 {
            return Ok(());
        }
        let mut p = share_key(entity, limit_name, window_start, node_id);
        p.push(to_i64(unused, "unused")?.into());
        self.db()
            .transaction(vec![
                Stmt::new(RETURN_COUNTER_SQL, p.clone()),
                Stmt::new(LOWER_HELD_SQL, p),
            ])
            .await?;
        Ok(())
    }

    /// Starts a counter at `spent` (a budget's spend before the fleet leased from it); a
    /// counter that exists is left as it is.
    pub async fn seed_counter(
        &self,
        entity: &EntityRef,
        limit_name: &str,
        window_start: i64,
        limit_value: u64,
        spent: u64,
    ) -> Result<()> {
        let mut p = key(entity, limit_name, window_start);
        p.push(to_i64(spent, "spent")?.into());
        p.push(to_i64(limit_value, "limit_value")?.into());
        self.db().execute(SEED_SQL, p).await?;
        Ok(())
    }

    /// Writes one flush of a node's usage — counters, what it spent of its shares (a fleet
    /// node), request logs — in one transaction, at most once: a unit is either still held
    /// or spent, never both or neither, and a batch replayed after a crash or an outage is
    /// not counted twice. Returns false when a batch with this id was written before.
    pub async fn write_batch(&self, batch: &UsageBatch<'_>) -> Result<bool> {
        let mut stmts = vec![Stmt::new(
            "INSERT INTO usage_batches (batch_id, applied_at) VALUES ($1, $2)",
            vec![batch.id.into(), crate::now_unix().into()],
        )];
        stmts.extend(self.usage_stmts(batch.deltas)?);
        if let Some(node) = batch.node_id {
            for s in batch.settles.iter().filter(|s| s.units > 0) {
                let mut p = share_key(&s.entity, &s.limit_name, s.window_start, node);
                p.push(to_i64(s.units, "units")?.into());
                stmts.push(Stmt::new(LOWER_HELD_SQL, p));
            }
        }
        match crate::logs::write_with_logs(self.db(), stmts, batch.logs, batch.yielding).await {
            Ok(()) => Ok(true),
            Err(e) if e.constraint() == Some(crate::error::Constraint::Unique) => {
                // Either this batch was written before, or a log id collided: tell which.
                let seen = self
                    .db()
                    .query(
                        "SELECT 1 FROM usage_batches WHERE batch_id = $1",
                        vec![batch.id.into()],
                    )
                    .await?;
                if seen.is_empty() {
                    Err(e)
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets batch ids older than `before` (unix seconds): replays come within hours.
    pub async fn purge_usage_batches(&self, before: i64) -> Result<u64> {
        self.db()
            .execute(
                "DELETE FROM usage_batches WHERE applied_at < $1",
                vec![before.into()],
            )
            .await
    }

    /// The counter of one window, if it exists.
    pub async fn lease_counter(
        &self,
        entity: &EntityRef,
        limit_name: &str,
        window_start: i64,
    ) -> Result<Option<LeaseCounter>> {
        let rows = self
            .db()
            .query(
                "SELECT used, limit_value FROM limit_counters WHERE entity_kind = $1 \
                 AND entity_id = $2 AND limit_name = $3 AND window_start = $4",
                key(entity, limit_name, window_start),
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(LeaseCounter {
                    used: r.u64(0)?,
                    limit_value: r.u64(1)?,
                })
            })
            .transpose()
    }

    /// What node `node_id` holds of a window's counter (0 when it holds nothing).
    pub async fn share_held(
        &self,
        node_id: &str,
        entity: &EntityRef,
        limit_name: &str,
        window_start: i64,
    ) -> Result<u64> {
        let rows = self
            .db()
            .query(
                "SELECT held FROM limit_shares WHERE entity_kind = $1 AND entity_id = $2 \
                 AND limit_name = $3 AND window_start = $4 AND node_id = $5",
                share_key(entity, limit_name, window_start, node_id),
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.u64(0))
    }

    /// Deletes counters (and shares) of windows that ended long ago: rate windows that started
    /// before `rate_before`, budget periods that started before `budget_before` (a lifetime
    /// budget's period starts at 0 and is kept).
    pub async fn purge_limit_counters(&self, rate_before: i64, budget_before: i64) -> Result<u64> {
        const OLD: &str = "(limit_name NOT LIKE 'budget%' AND window_start < $1) \
            OR (limit_name LIKE 'budget%' AND window_start > 0 AND window_start < $2)";
        let p = vec![rate_before.into(), budget_before.into()];
        let out = self
            .db()
            .transaction(vec![
                Stmt::new(format!("DELETE FROM limit_shares WHERE {OLD}"), p.clone()),
                Stmt::new(
                    format!("DELETE FROM limit_counters WHERE {OLD} RETURNING 1"),
                    p,
                ),
            ])
            .await?;
        Ok(out.last().map_or(0, |rows| rows.len() as u64))
    }
}
