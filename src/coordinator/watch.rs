//! Config changes reach this node: the admin API's writes on this node and, through the
//! store's notifications, every other node's — and none is missed (docs/cluster.md, "Config changes").
//!
//! One task, so reloads never overlap. It wakes on the local `changed` signal, on a
//! notification, on the LISTEN connection coming back (changes in between were missed) and
//! every second to compare the stored config version with the version the snapshot was
//! loaded at. Whatever is queued when it wakes is drained first and answered at once: other
//! nodes' changes to keys, teams and customers whose versions follow the snapshot's without a
//! gap are applied alone (src/coordinator/apply.rs: only those entities are read); anything
//! else — a provider, a missing version, this node's own write, a reconnect, a version that
//! stayed ahead for a whole check interval — by one full reload. A notification of a version the snapshot already holds
//! causes nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::{ConfigEvent, ConfigKind, ConfigSubscription};
use tokio::time::{Instant, MissedTickBehavior};

use super::apply::Changes;
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
    /// The config version the snapshot in force was loaded at (and that leases carry).
    pub version: AtomicU64,
    /// Whether this node's LISTEN connection is up (always on SQLite).
    pub connected: AtomicBool,
    /// Reloads completed since start (the first one included).
    pub reloads: AtomicU64,
    /// Batches of other nodes' changes applied alone, without a reload.
    pub applied: AtomicU64,
}

pub static WATCH: WatchStats = WatchStats {
    running: AtomicBool::new(false),
    version: AtomicU64::new(0),
    connected: AtomicBool::new(false),
    reloads: AtomicU64::new(0),
    applied: AtomicU64::new(0),
};

/// Why the watch woke up.
enum Wake {
    /// Something may have changed, nobody says what: reload everything (after draining what
    /// else is queued).
    Reload,
    /// Another node's write, by entity and version: maybe applied alone.
    Changed(ConfigEvent),
    /// Nothing to do but look at the subscription again.
    Idle,
}

/// What a wake-up leads to.
enum Todo {
    Nothing,
    Reload,
    /// These changes, and whatever else is queued by the time they are looked at.
    Apply(Vec<ConfigEvent>),
}

/// Entities whose changes, with `loaded`, make every version up to the newest (returned)
/// known: then applying those alone brings the snapshot to that version. `None` when a
/// provider changed, a version is missing (a notification lost or still on its way), or the
/// loaded version is unknown: a full reload is due.
fn entities_alone(events: &[ConfigEvent], loaded: Option<u64>) -> Option<(Changes, u64)> {
    let loaded = loaded?;
    let mut versions = Vec::with_capacity(events.len());
    let mut changes = Changes::default();
    for event in events {
        let ConfigEvent::Changed {
            change,
            version: Some(v),
        } = event
        else {
            return None;
        };
        if *v <= loaded {
            continue;
        }
        let ids = match change.kind {
            ConfigKind::Key => &mut changes.keys,
            ConfigKind::Team => &mut changes.teams,
            ConfigKind::Customer => &mut changes.customers,
            ConfigKind::Provider => return None,
        };
        ids.insert(change.id.clone());
        versions.push(*v);
    }
    versions.sort_unstable();
    versions.dedup();
    let Some(&newest) = versions.last() else {
        return Some((changes, loaded));
    };
    (newest - loaded == versions.len() as u64).then_some((changes, newest))
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
        let mut todo = Todo::Reload;
        // A stored version the last check found ahead of the snapshot.
        let mut lagging: Option<u64> = None;
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
                        todo = Todo::Reload;
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
            if let Todo::Apply(events) = &mut todo {
                let mut events = std::mem::take(events);
                todo = Todo::Nothing;
                let local = self.drain(subscription.as_mut(), &mut events).await;
                match entities_alone(&events, loaded).filter(|_| !local) {
                    Some((changes, version)) => match self.apply_versioned(&changes, version).await
                    {
                        Ok(()) => loaded = Some(version),
                        Err(e) => {
                            tracing::warn!(error = %e, "applying changes failed; reloading everything");
                            todo = Todo::Reload;
                        }
                    },
                    None => todo = Todo::Reload,
                }
                continue;
            }
            if matches!(todo, Todo::Reload) {
                self.drain(subscription.as_mut(), &mut Vec::new()).await;
                match self.reload_versioned().await {
                    Ok(version) => loaded = Some(version),
                    // Retried by the version check, which sees `loaded` is stale.
                    Err(e) => {
                        tracing::error!(error = %e, "governance reload failed; keeping the previous snapshot");
                        loaded = None;
                    }
                }
                todo = Todo::Nothing;
                continue;
            }
            let wake = tokio::select! {
                () = self.changed.notified() => Wake::Reload,
                event = next_event(subscription.as_mut()) => match event {
                    Some(event) if needs_reload(&event, loaded) => Wake::Changed(event),
                    Some(_) => Wake::Idle,
                    None => {
                        subscription = None;
                        Wake::Reload
                    }
                },
                _ = check.tick() => match self.store.config_version().await {
                    Ok(v) if loaded.is_none() => {
                        lagging = Some(v);
                        Wake::Reload
                    }
                    // Behind: reload once a version seen at the last check is still not in —
                    // a notification gets one check interval to arrive and be applied alone.
                    Ok(v) if Some(v) != loaded => match lagging {
                        Some(seen) if loaded.is_some_and(|l| l < seen) => {
                            tracing::info!(stored = v, loaded = ?loaded, "config version moved without a notification; reloading");
                            Wake::Reload
                        }
                        _ => {
                            lagging = Some(v);
                            Wake::Idle
                        }
                    },
                    Ok(_) => {
                        lagging = None;
                        Wake::Idle
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "config version check failed");
                        Wake::Idle
                    }
                },
                () = tokio::time::sleep_until(retry_at), if subscription.is_none() => Wake::Idle,
            };
            todo = match wake {
                Wake::Reload => Todo::Reload,
                Wake::Changed(event) => Todo::Apply(vec![event]),
                Wake::Idle => Todo::Nothing,
            };
        }
    }

    /// Takes whatever is already queued — notifications into `events`, the local signal — so
    /// that what follows covers all of it. Returns whether the local signal was up (this
    /// node's own admin write, which does not say what it changed).
    async fn drain(
        &self,
        subscription: Option<&mut ConfigSubscription>,
        events: &mut Vec<ConfigEvent>,
    ) -> bool {
        if let Some(sub) = subscription {
            while let Some(event) = sub.try_next_event() {
                events.push(event);
            }
        }
        tokio::select! {
            biased;
            () = self.changed.notified() => true,
            () = std::future::ready(()) => false,
        }
    }

    /// Applies `changes` alone; the snapshot then holds `version`.
    async fn apply_versioned(&self, changes: &Changes, version: u64) -> store::Result<()> {
        self.apply_changes(changes).await?;
        self.loaded(version);
        WATCH.applied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(version, ?changes, "changes applied alone");
        Ok(())
    }

    /// Reads the config version, then everything: the snapshot holds at least that version.
    async fn reload_versioned(&self) -> store::Result<u64> {
        let version = self.store.config_version().await?;
        self.reload().await?;
        self.loaded(version);
        WATCH.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(version, "governance reloaded at config version");
        Ok(version)
    }

    /// The snapshot in force holds config `version`.
    fn loaded(&self, version: u64) {
        // Also what a fleet node's leases carry from here on (not before: a lease for a limit
        // object of the previous snapshot would carry its old value under the new version).
        // The fleet's counters keep the limit value of the newest version that leased, so a
        // node behind cannot raise it back.
        WATCH.version.store(version, Ordering::Relaxed);
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
    use std::collections::HashSet;

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

    fn change(kind: ConfigKind, id: &str, version: Option<u64>) -> ConfigEvent {
        ConfigEvent::Changed {
            change: ConfigChange {
                kind,
                id: id.into(),
            },
            version,
        }
    }

    #[test]
    fn changes_are_applied_alone_only_when_no_version_is_missing() {
        let key = |id, v| change(ConfigKind::Key, id, Some(v));
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        // 6, 7 and 8 after 5 (in any order, an old one ignored): each entity, at 8.
        let (changes, version) = entities_alone(
            &[
                key("b", 7),
                key("a", 6),
                key("a", 4),
                change(ConfigKind::Team, "t", Some(8)),
            ],
            Some(5),
        )
        .unwrap();
        assert_eq!(version, 8);
        assert_eq!(changes.keys, ids(&["a", "b"]));
        assert_eq!(changes.teams, ids(&["t"]));
        // 7 without 6 (lost, or still on its way): reload.
        assert!(entities_alone(&[key("a", 7)], Some(5)).is_none());
        // A provider, an unversioned node, a reconnect, an unknown snapshot: reload.
        assert!(entities_alone(&[change(ConfigKind::Provider, "p", Some(6))], Some(5)).is_none());
        assert!(entities_alone(&[change(ConfigKind::Key, "a", None)], Some(5)).is_none());
        assert!(entities_alone(&[key("a", 6), ConfigEvent::Resubscribed], Some(5)).is_none());
        assert!(entities_alone(&[key("a", 6)], None).is_none());
        // Nothing newer than the snapshot: nothing to apply.
        assert_eq!(
            entities_alone(&[key("a", 5)], Some(5)),
            Some((Changes::default(), 5))
        );
    }
}
