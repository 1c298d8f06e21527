//! The budget and rate-limit columns customers, teams and keys share (a budget's limit and
//! period, then rpm … tpd), and reading one entity's budget.

use vocab::{BudgetPeriod, EntityKind, EntityRef, NanoUsd};

use crate::db::{opt_u64, Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::model::{Budget, Limits};
use crate::Store;

use super::entities::{CUSTOMERS, KEYS, TEAMS};

/// The 8 budget + limit parameters, in column order.
pub(super) fn budget_limit_params(budget: Option<&Budget>, limits: &Limits) -> Result<Vec<Value>> {
    Ok(vec![
        opt_u64(budget.map(|b| b.limit_nanos.nanos()), "budget.limit_nanos")?,
        budget.map(|b| b.period.as_str()).into(),
        opt_u64(limits.rpm, "limits.rpm")?,
        opt_u64(limits.rph, "limits.rph")?,
        opt_u64(limits.rpd, "limits.rpd")?,
        opt_u64(limits.tpm, "limits.tpm")?,
        opt_u64(limits.tph, "limits.tph")?,
        opt_u64(limits.tpd, "limits.tpd")?,
    ])
}

/// Reads the budget columns (limit, period) starting at `at`.
fn read_budget(row: &Row, at: usize) -> Result<Option<Budget>> {
    Ok(match (row.opt_u64(at)?, row.opt_text(at + 1)?) {
        (Some(limit_nanos), Some(p)) => Some(Budget {
            limit_nanos: NanoUsd::from_nanos(limit_nanos),
            period: BudgetPeriod::parse(&p)
                .ok_or_else(|| Error::Corrupt(format!("budget period {p:?}")))?,
        }),
        (None, None) => None,
        _ => return Err(Error::Corrupt("budget half set".into())),
    })
}

/// Reads the 8 budget + limit columns starting at `at`.
pub(super) fn read_budget_limits(row: &Row, at: usize) -> Result<(Option<Budget>, Limits)> {
    let budget = read_budget(row, at)?;
    let limits = Limits {
        rpm: row.opt_u64(at + 2)?,
        rph: row.opt_u64(at + 3)?,
        rpd: row.opt_u64(at + 4)?,
        tpm: row.opt_u64(at + 5)?,
        tph: row.opt_u64(at + 6)?,
        tpd: row.opt_u64(at + 7)?,
    };
    Ok((budget, limits))
}

/// The table of `kind`'s entities, and the kind's name in errors.
fn entity_table(kind: EntityKind) -> (&'static str, &'static str) {
    match kind {
        EntityKind::Key => (KEYS.name, KEYS.kind),
        EntityKind::Team => (TEAMS.name, TEAMS.kind),
        EntityKind::Customer => (CUSTOMERS.name, CUSTOMERS.kind),
    }
}

/// A statement that locks `entity`'s row until its transaction ends (by rewriting its budget
/// period as it is: not a key column, so creating a child that references the row is not
/// blocked), for a budget reset to run alone among the entity's resets.
pub(crate) fn lock_budget_stmt(entity: &EntityRef) -> Stmt {
    let (table, _) = entity_table(entity.kind);
    Stmt::new(
        format!("UPDATE {table} SET budget_period = budget_period WHERE id = $1"),
        vec![entity.id.as_str().into()],
    )
}

impl Store {
    /// The budget of `entity` (`None` if it has none); [`Error::NotFound`]
    /// if the entity does not exist.
    pub async fn entity_budget(&self, entity: &EntityRef) -> Result<Option<Budget>> {
        let (table, kind) = entity_table(entity.kind);
        let sql = format!("SELECT budget_limit_nanos, budget_period FROM {table} WHERE id = $1");
        let rows = self
            .db()
            .query(&sql, vec![entity.id.as_str().into()])
            .await?;
        let row = rows.first().ok_or_else(|| Error::NotFound {
            kind,
            id: entity.id.clone(),
        })?;
        read_budget(row, 0)
    }
}
