//! Leases on cluster-wide limit counters (exact rate limits across nodes).
//!
//! A node asks for `want` units of a limit for a window; the database grants
//! `min(want, limit_value - used)` (never negative) and adds it to `used`,
//! atomically, in one statement (`$5` = limit_value, `$6` = want):
//!
//! ```sql
//! INSERT INTO limit_counters
//!     (entity_kind, entity_id, limit_name, window_start, used, limit_value, last_grant)
//! VALUES ($1, $2, $3, $4, LEAST($5, $6), $5, LEAST($5, $6))
//! ON CONFLICT (entity_kind, entity_id, limit_name, window_start) DO UPDATE SET
//!     last_grant  = GREATEST(0, LEAST(excluded.limit_value - limit_counters.used, $6)),
//!     used        = limit_counters.used
//!                   + GREATEST(0, LEAST(excluded.limit_value - limit_counters.used, $6)),
//!     limit_value = excluded.limit_value
//! RETURNING last_grant
//! ```
//!
//! Why this is correct under concurrency on PostgreSQL: `INSERT … ON
//! CONFLICT DO UPDATE` either inserts or locks the existing row and applies
//! the SET to its latest committed version (even under READ COMMITTED), so
//! concurrent requests serialise on the row lock and each sees the `used`
//! left by the previous one. All SET expressions read the *old* row, so
//! `last_grant` and the increment of `used` are the same number, which
//! `RETURNING` reports (PostgreSQL < 18 cannot return old values, hence the
//! `last_grant` column). A lowered limit never makes `used` shrink: the
//! grant is clamped at 0. On SQLite the same statement runs (with
//! `MIN`/`MAX`) under the single connection's lock.
//!
//! Unused units go back with `used = GREATEST(0, used - unused)`.

use vocab::EntityRef;

use crate::db::{to_i64, Value};
use crate::error::{Error, Result};
use crate::model::LeaseCounter;
use crate::Store;

const ACQUIRE_SQL: &str = "INSERT INTO limit_counters \
    (entity_kind, entity_id, limit_name, window_start, used, limit_value, last_grant) \
    VALUES ($1, $2, $3, $4, LEAST(CAST($5 AS BIGINT), CAST($6 AS BIGINT)), CAST($5 AS BIGINT), \
            LEAST(CAST($5 AS BIGINT), CAST($6 AS BIGINT))) \
    ON CONFLICT (entity_kind, entity_id, limit_name, window_start) DO UPDATE SET \
    last_grant = GREATEST(0, LEAST(excluded.limit_value - limit_counters.used, CAST($6 AS BIGINT))), \
    used = limit_counters.used \
        + GREATEST(0, LEAST(excluded.limit_value - limit_counters.used, CAST($6 AS BIGINT))), \
    limit_value = excluded.limit_value \
    RETURNING last_grant";

const RETURN_SQL: &str = "UPDATE limit_counters SET used = GREATEST(0, used - CAST($5 AS BIGINT)) \
    WHERE entity_kind = $1 AND entity_id = $2 AND limit_name = $3 AND window_start = $4";

fn key(entity: &EntityRef, limit_name: &str, window_start: i64) -> Vec<Value> {
    vec![
        entity.kind.as_str().into(),
        entity.id.as_str().into(),
        limit_name.into(),
        window_start.into(),
    ]
}

impl Store {
    /// Grants up to `want` units of `limit_name` (e.g. `"rpm"`) for the
    /// window starting at `window_start`, never letting the window's total
    /// exceed `limit_value`. Returns the units granted (0 when exhausted).
    pub async fn acquire_lease(
        &self,
        entity: &EntityRef,
        limit_name: &str,
        window_start: i64,
        limit_value: u64,
        want: u64,
    ) -> Result<u64> {
        if want == 0 {
            return Ok(0);
        }
        let mut p = key(entity, limit_name, window_start);
        p.push(to_i64(limit_value, "limit_value")?.into());
        p.push(to_i64(want, "want")?.into());
        let rows = self.db().query(ACQUIRE_SQL, p).await?;
        rows.first()
            .ok_or_else(|| Error::Corrupt("lease upsert returned no row".into()))?
            .u64(0)
    }

    /// Gives back `unused` units of an earlier grant (`used` never drops
    /// below 0; a missing counter is ignored).
    pub async fn return_lease(
        &self,
        entity: &EntityRef,
        limit_name: &str,
        window_start: i64,
        unused: u64,
    ) -> Result<()> {
        if unused == 0 {
            return Ok(());
        }
        let mut p = key(entity, limit_name, window_start);
        p.push(to_i64(unused, "unused")?.into());
        self.db().execute(RETURN_SQL, p).await?;
        Ok(())
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

    /// Deletes counters of windows that started before `before_window_start`.
    pub async fn purge_limit_counters(&self, before_window_start: i64) -> Result<u64> {
        self.db()
            .execute(
                "DELETE FROM limit_counters WHERE window_start < $1",
                vec![before_window_start.into()],
            )
            .await
    }
}
