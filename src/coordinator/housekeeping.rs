//! The store's housekeeping, done by one node: the fleet's leader (docs/cluster.md), or the
//! node alone on SQLite. Request logs older than their retention, usage batch ids old enough
//! that no spool replays them, expired entries of the response cache's fleet tier, and, in a
//! fleet, the counters of windows and budget periods that ended long ago.

use std::sync::Arc;
use std::time::Duration;

use store::Store;

use super::fleet::Fleet;

/// How often the housekeeping runs.
const EVERY: Duration = Duration::from_secs(600);
/// Batch ids are kept this long: a spool is replayed when its node starts again, within hours.
const BATCH_IDS_KEPT: i64 = 7 * 86_400;

/// Runs the housekeeping for as long as the node runs; `log_retention` of `None` keeps
/// request logs forever.
pub async fn run(store: Store, fleet: Option<Arc<Fleet>>, log_retention: Option<Duration>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if fleet.as_ref().is_some_and(|f| !f.is_leader()) {
            continue;
        }
        let now = store::now_unix();
        if let Some(keep) = log_retention {
            let before_ms = (now - keep.as_secs() as i64) * 1000;
            report("request logs", store.purge_request_logs(before_ms).await);
        }
        report(
            "usage batch ids",
            store.purge_usage_batches(now - BATCH_IDS_KEPT).await,
        );
        // Expired cache entries are never served; they only take room. Many each period is
        // the normal case, so the count is for debugging.
        match store.cache_purge_expired(unix_ms()).await {
            Ok(n) => tracing::debug!(rows = n, "expired response cache entries purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired response cache entries failed"),
        }
        if fleet.is_some() {
            // Rate windows that ended two days ago; budget periods that started 400 days ago
            // (a lifetime budget's counter is kept).
            let purged = store
                .purge_limit_counters(now - 2 * 86_400, now - 400 * 86_400)
                .await;
            report("limit counters", purged);
        }
    }
}

/// Now in Unix milliseconds.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn report(what: &str, purged: store::Result<u64>) {
    match purged {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "old {what} purged"),
        Err(e) => tracing::warn!(error = %e, "purging old {what} failed"),
    }
}
