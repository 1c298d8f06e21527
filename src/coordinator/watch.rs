//! Config changes reach this node: the admin API's writes on this node and, through the
//! store's notifications, every other node's — and none is missed (docs/cluster.md, "Config changes").
//!
//! One task, so reloads never overlap. It wakes on the local `changed` signal, on a
//! notification, on the LISTEN connection coming back (changes in between were missed) and
//! every second to compare the stored config version with the version the snapshot was
//! loaded at. Whatever is queued when it wakes is drained first and answered by one reload; a
//! notification of a version the snapshot already holds (this node's own writes, mostly)
//! causes none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::{ConfigEvent, ConfigSubscription};
use tokio::time::{Instant, MissedTickBehavior};

use super::governance::GovRuntime;

/// How often the stored config version is compared with the loaded one.
const VERSION_CHECK: Duration = Duration::from_secs(1);
/// Retry delays of a subscription that could not be opened at all (a lost one reconnects
/// by itself, with the same delays).
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// The watch's state, for `/metrics`. One node runs per process, so it is process-wide.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Set once the watch runs.
    pub running: AtomicBool,
    /// The config version the snapshot in force was loaded at.
    pub version: AtomicU64,
    /// Whether this node's LISTEN connection is up (always on SQLite).
    pub connected: AtomicBool,
    /// Reloads completed since start (the first one included).
    pub reloads: AtomicU64,
}

pub static WATCH: WatchStats = WatchStats {
    running: AtomicBool::new(false),
    version: AtomicU64::new(0),
    connected: AtomicBool::new(false),
    reloads: AtomicU64::new(0),
};

/// Why the watch woke up.
enum Wake {
    /// Something may have changed: reload (after draining what else is queued).
    Reload,
    /// Nothing to do but look at the subscription again.
    Idle,
}

impl GovRuntime {
    /// Keeps the snapshot in step with the store until the process ends.
    pub async fn watch_changes(self: Arc<Self>) {
        WATCH.running.store(true, Ordering::Relaxed);
        let node = self.settings.cluster.as_ref().map(|c| c.node_id.clone());
        let mut subscription: Option<ConfigSubscription> = None;
        let mut retry_at = Instant::now();
        let mut retry_delay = RESUBSCRIBE_MIN;
        // The version the snapshot was loaded at; unknown until the first reload here (the
        // snapshot published at start was read before this node listened).
        let mut loaded: Option<u64> = None;
        let mut check = tokio::time::interval(VERSION_CHECK);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pending = true;
        loop {
            if subscription.is_none() && Instant::now() >= retry_at {
                match self
                    .store
                    .subscribe_config_changes_as(node.as_deref())
                    .await
                {
                    Ok(sub) => {
                        subscription = Some(sub);
                        retry_delay = RESUBSCRIBE_MIN;
                        // Listening from now on; what came before is read by this reload.
                        pending = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = retry_delay.as_millis() as u64, "cannot LISTEN for config changes; retrying (the version check still runs)");
                        retry_at = Instant::now() + retry_delay;
                        retry_delay = (retry_delay * 2).min(RESUBSCRIBE_MAX);
                    }
                }
            }
            WATCH.connected.store(
                subscription.as_ref().is_some_and(|s| s.is_connected()),
                Ordering::Relaxed,
            );
            if pending {
                self.drain(subscription.as_mut()).await;
                match self.reload_versioned().await {
                    Ok(version) => {
                        loaded = Some(version);
                        pending = false;
                    }
                    // Retried by the version check, which sees `loaded` is stale.
                    Err(e) => {
                        tracing::error!(error = %e, "governance reload failed; keeping the previous snapshot");
                        loaded = None;
                        pending = false;
                    }
                }
                continue;
            }
            let wake = tokio::select! {
                () = self.changed.notified() => Wake::Reload,
                event = next_event(subscription.as_mut()) => match event {
                    Some(event) if needs_reload(&event, loaded) => Wake::Reload,
                    Some(_) => Wake::Idle,
                    None => {
                        subscription = None;
                        Wake::Reload
                    }
                },
                _ = check.tick() => match self.store.config_version().await {
                    Ok(v) if Some(v) != loaded => {
                        if loaded.is_some() {
                            tracing::info!(stored = v, loaded = ?loaded, "config version moved without a notification; reloading");
                        }
                        Wake::Reload
                    }
                    Ok(_) => Wake::Idle,
                    Err(e) => {
                        tracing::debug!(error = %e, "config version check failed");
                        Wake::Idle
                    }
                },
                () = tokio::time::sleep_until(retry_at), if subscription.is_none() => Wake::Idle,
            };
            pending = matches!(wake, Wake::Reload);
        }
    }

    /// Takes whatever is already queued (notifications, the local signal): the reload about
    /// to run reads all of it.
    async fn drain(&self, subscription: Option<&mut ConfigSubscription>) {
        if let Some(sub) = subscription {
            while sub.try_next_event().is_some() {}
        }
        tokio::select! {
            biased;
            () = self.changed.notified() => {}
            () = std::future::ready(()) => {}
        }
    }

    /// Reads the config version, then everything: the snapshot holds at least that version.
    async fn reload_versioned(&self) -> store::Result<u64> {
        let version = self.store.config_version().await?;
        self.reload().await?;
        if let Some(fleet) = &self.fleet {
            // Leases from here on carry this version (not before: a lease for a limit object
            // of the previous snapshot would carry its old value under the new version). The
            // fleet's counters keep the limit value of the newest version that leased, so a
            // node behind cannot raise it back.
            fleet
                .config_version
                .store(version, std::sync::atomic::Ordering::Relaxed);
        }
        WATCH.version.store(version, Ordering::Relaxed);
        WATCH.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(version, "governance reloaded at config version");
        Ok(version)
    }
}

/// The subscription's next event; pending forever without one.
async fn next_event(subscription: Option<&mut ConfigSubscription>) -> Option<ConfigEvent> {
    match subscription {
        Some(sub) => sub.next_event().await,
        None => std::future::pending().await,
    }
}

/// Whether `event` can change what a snapshot loaded at `loaded` holds.
fn needs_reload(event: &ConfigEvent, loaded: Option<u64>) -> bool {
    match (event, loaded) {
        (
            ConfigEvent::Changed {
                version: Some(v), ..
            },
            Some(loaded),
        ) => *v > loaded,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use store::{ConfigChange, ConfigKind};

    use super::*;

    #[test]
    fn notifications_of_loaded_versions_are_skipped() {
        let changed = |version| ConfigEvent::Changed {
            change: ConfigChange {
                kind: ConfigKind::Key,
                id: "k".into(),
            },
            version,
        };
        assert!(!needs_reload(&changed(Some(4)), Some(5)));
        assert!(!needs_reload(&changed(Some(5)), Some(5)));
        assert!(needs_reload(&changed(Some(6)), Some(5)));
        // A node without versions, an unknown snapshot, a reconnect: always reload.
        assert!(needs_reload(&changed(None), Some(5)));
        assert!(needs_reload(&changed(Some(1)), None));
        assert!(needs_reload(&ConfigEvent::Resubscribed, Some(5)));
    }
}
