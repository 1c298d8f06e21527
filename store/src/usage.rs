//! Usage counters and budgets.
//!
//! Usage is keyed by (entity kind, entity id, budget period start) and only
//! ever changed by additive deltas:
//!
//! ```sql
//! INSERT INTO usage (...) VALUES (...)
//! ON CONFLICT (entity_kind, entity_id, period_start) DO UPDATE SET
//!     spent_nanos = usage.spent_nanos + excluded.spent_nanos, ...
//! ```
//!
//! A budget reset zeroes the period's spend and raises the row's budget generation; a
//! delta's spend charged under an earlier generation (admitted before the reset, written
//! after it — another node's flush, say) is then not added (docs/cluster.md, "A reset
//! starts a new generation").
//!
//! On PostgreSQL the conflicting row is locked and the increment applied to
//! its latest committed version, so concurrent writers on several nodes add
//! up and never lose updates. A batch is merged and sorted by key before it
//! runs, so two batches lock rows in the same order and cannot deadlock.

use std::collections::BTreeMap;

use crate::db::{to_i64, Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::governance::lock_budget_stmt;
use vocab::{BudgetPeriod, EntityKind, EntityRef, NanoUsd};

use crate::model::{Usage, UsageDelta};
use crate::{now_unix, Store};

/// Adds a delta. Its spend counts unless it was charged under an earlier budget generation
/// than the row's (`$9`; [`UNKNOWN_GENERATION`] counts always): such a request was admitted
/// before a reset of this period, and its usage reached the store after it. Token and request
/// counts always add up, as a reset keeps them.
const ADD_USAGE_SQL: &str = "INSERT INTO usage \
    (entity_kind, entity_id, period_start, spent_nanos, requests, prompt_tokens, \
     completion_tokens, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (entity_kind, entity_id, period_start) DO UPDATE SET \
    spent_nanos = usage.spent_nanos + CASE WHEN CAST($9 AS BIGINT) >= usage.budget_generation \
        THEN excluded.spent_nanos ELSE 0 END, \
    requests = usage.requests + excluded.requests, \
    prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = usage.completion_tokens + excluded.completion_tokens, \
    updated_at = excluded.updated_at";

/// Zeroes the period's spend (creating the period's row when it has none) and keeps the
/// previous value in `last_reset_spent` (the SET list sees the old row, in both dialects).
/// The row's budget generation becomes the entity's reset count with this reset
/// ([`RESET_LOG_SQL`] records it next, in the same transaction), the generation the nodes
/// give the budget once they read it. The count is right because a statement before it in
/// the transaction locked the entity ([`Store::reset_budget`]).
const RESET_SQL: &str = "INSERT INTO usage \
    (entity_kind, entity_id, period_start, spent_nanos, requests, prompt_tokens, \
     completion_tokens, reset_at, last_reset_spent, updated_at, budget_generation) \
    VALUES ($1, $2, $3, 0, 0, 0, 0, $4, 0, $4, \
        (SELECT COUNT(*) + 1 FROM budget_resets WHERE entity_kind = $1 AND entity_id = $2)) \
    ON CONFLICT (entity_kind, entity_id, period_start) DO UPDATE SET \
    last_reset_spent = usage.spent_nanos, spent_nanos = 0, \
    reset_at = excluded.reset_at, updated_at = excluded.updated_at, \
    budget_generation = excluded.budget_generation \
    RETURNING last_reset_spent";

/// The generation of a delta charged under no known budget generation (its entity had no
/// budget, or its records predate generations): its spend always counts.
const UNKNOWN_GENERATION: i64 = i64::MAX;

/// Records the reset; runs in the same transaction, while the row is locked.
const RESET_LOG_SQL: &str = "INSERT INTO budget_resets \
    (entity_kind, entity_id, period_start, reset_at, spent_before) \
    SELECT entity_kind, entity_id, period_start, reset_at, last_reset_spent FROM usage \
    WHERE entity_kind = $1 AND entity_id = $2 AND period_start = $3";

const USAGE_COLS: &str =
    "entity_kind, entity_id, period_start, spent_nanos, requests, prompt_tokens, \
     completion_tokens, reset_at";

fn usage_from_row(r: &Row) -> Result<Usage> {
    let kind = r.text(0)?;
    Ok(Usage {
        entity: EntityRef {
            kind: EntityKind::parse(&kind)
                .ok_or_else(|| Error::Corrupt(format!("entity kind {kind:?}")))?,
            id: r.text(1)?,
        },
        period_start: r.i64(2)?,
        spent_nanos: NanoUsd::from_nanos(r.u64(3)?),
        requests: r.u64(4)?,
        prompt_tokens: r.u64(5)?,
        completion_tokens: r.u64(6)?,
        reset_at: r.opt_i64(7)?,
    })
}

#[derive(Default)]
struct Sum {
    spent: u64,
    requests: u64,
    prompt: u64,
    completion: u64,
}

fn add(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or(Error::OutOfRange("usage delta"))
}

impl Store {
    /// Adds the deltas, all in one transaction (all or nothing). Deltas
    /// for the same (entity, period) are merged first.
    pub async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let stmts = self.usage_stmts(deltas)?;
        if !stmts.is_empty() {
            self.db().transaction(stmts).await?;
        }
        Ok(())
    }

    /// The statements that add `deltas` (merged per entity and period).
    pub(crate) fn usage_stmts(&self, deltas: &[UsageDelta]) -> Result<Vec<Stmt>> {
        let mut merged: BTreeMap<(EntityKind, &str, i64, Option<u64>), Sum> = BTreeMap::new();
        for d in deltas {
            let s = merged
                .entry((
                    d.entity.kind,
                    d.entity.id.as_str(),
                    d.period_start,
                    d.budget_generation,
                ))
                .or_default();
            s.spent = add(s.spent, d.spent_nanos.nanos())?;
            s.requests = add(s.requests, d.requests)?;
            s.prompt = add(s.prompt, d.prompt_tokens)?;
            s.completion = add(s.completion, d.completion_tokens)?;
        }
        let now = now_unix();
        merged
            .into_iter()
            .map(|((kind, id, ps, generation), s)| {
                let generation = match generation {
                    Some(g) => to_i64(g, "budget_generation")?,
                    None => UNKNOWN_GENERATION,
                };
                Ok(Stmt::new(
                    ADD_USAGE_SQL,
                    vec![
                        kind.as_str().into(),
                        id.into(),
                        ps.into(),
                        to_i64(s.spent, "spent_nanos")?.into(),
                        to_i64(s.requests, "requests")?.into(),
                        to_i64(s.prompt, "prompt_tokens")?.into(),
                        to_i64(s.completion, "completion_tokens")?.into(),
                        now.into(),
                        generation.into(),
                    ],
                ))
            })
            .collect()
    }

    /// Usage of `entity` in the period starting at `period_start`.
    pub async fn usage(&self, entity: &EntityRef, period_start: i64) -> Result<Option<Usage>> {
        let sql = format!(
            "SELECT {USAGE_COLS} FROM usage \
             WHERE entity_kind = $1 AND entity_id = $2 AND period_start = $3"
        );
        let rows = self
            .db()
            .query(&sql, key_params(entity, period_start))
            .await?;
        rows.first().map(usage_from_row).transpose()
    }

    /// All usage rows of `entity`, newest period first.
    pub async fn usage_history(&self, entity: &EntityRef) -> Result<Vec<Usage>> {
        let sql = format!(
            "SELECT {USAGE_COLS} FROM usage WHERE entity_kind = $1 AND entity_id = $2 \
             ORDER BY period_start DESC"
        );
        let rows = self
            .db()
            .query(
                &sql,
                vec![entity.kind.as_str().into(), entity.id.as_str().into()],
            )
            .await?;
        rows.iter().map(usage_from_row).collect()
    }

    /// Start of `entity`'s current budget period (0 without a budget).
    /// [`Error::NotFound`] if the entity does not exist.
    pub async fn current_period_start(&self, entity: &EntityRef, now_unix: i64) -> Result<i64> {
        let period = self
            .entity_budget(entity)
            .await?
            .map_or(BudgetPeriod::Never, |b| b.period);
        Ok(period.start(now_unix))
    }

    /// What `entity` spent in its current budget period (since the last
    /// reset). [`Error::NotFound`] if the entity does not exist.
    pub async fn budget_spent(&self, entity: &EntityRef, now_unix: i64) -> Result<NanoUsd> {
        let ps = self.current_period_start(entity, now_unix).await?;
        Ok(self
            .usage(entity, ps)
            .await?
            .map_or(NanoUsd::ZERO, |u| u.spent_nanos))
    }

    /// Sets the current period's spend of `entity` to 0, recording the reset
    /// (time and previous spend) in `budget_resets`. Request and token
    /// counts are kept. Returns the spend before the reset.
    ///
    /// The transaction first locks the entity's own row, so resets of one entity run one at a
    /// time, whichever period each one's clock put it in. On PostgreSQL each statement of a
    /// read-committed transaction sees what committed before it began, so [`RESET_SQL`]'s
    /// count, a later statement, sees every reset that committed while this one waited.
    /// Without the lock, two resets at once counted the same resets and wrote the same
    /// generation, one below the count the nodes then read; locking only the period's row
    /// still let two resets of different periods (a period's turn, the nodes' clocks on either
    /// side of it) do so. SQLite's writer runs one transaction at a time anyway.
    pub async fn reset_budget(&self, entity: &EntityRef, now_unix: i64) -> Result<NanoUsd> {
        let ps = self.current_period_start(entity, now_unix).await?;
        let mut reset = key_params(entity, ps);
        reset.push(now_unix.into());
        let out = self
            .db()
            .transaction(vec![
                lock_budget_stmt(entity),
                Stmt::new(RESET_SQL, reset),
                Stmt::new(RESET_LOG_SQL, key_params(entity, ps)),
            ])
            .await?;
        out.get(1)
            .and_then(|rows| rows.first())
            .ok_or_else(|| Error::Corrupt("reset returned no row".into()))?
            .u64(0)
            .map(NanoUsd::from_nanos)
    }

    /// Number of budget resets recorded for `entity`.
    pub async fn budget_reset_count(&self, entity: &EntityRef) -> Result<u64> {
        let rows = self
            .db()
            .query(
                "SELECT COUNT(*) FROM budget_resets WHERE entity_kind = $1 AND entity_id = $2",
                vec![entity.kind.as_str().into(), entity.id.as_str().into()],
            )
            .await?;
        rows.first()
            .ok_or_else(|| Error::Corrupt("COUNT returned no row".into()))?
            .u64(0)
    }
}

impl Store {
    /// Budget resets of every entity that had any (one query, for a whole reload).
    pub async fn budget_reset_counts(&self) -> Result<std::collections::HashMap<EntityRef, u64>> {
        let rows = self
            .db()
            .query(
                "SELECT entity_kind, entity_id, COUNT(*) FROM budget_resets \
                 GROUP BY entity_kind, entity_id",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let kind = r.text(0)?;
                let kind = EntityKind::parse(&kind)
                    .ok_or_else(|| Error::Corrupt(format!("unknown entity kind {kind:?}")))?;
                Ok((
                    EntityRef {
                        kind,
                        id: r.text(1)?,
                    },
                    r.u64(2)?,
                ))
            })
            .collect()
    }
}

fn key_params(entity: &EntityRef, period_start: i64) -> Vec<Value> {
    vec![
        entity.kind.as_str().into(),
        entity.id.as_str().into(),
        period_start.into(),
    ]
}
