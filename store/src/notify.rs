//! Config-change notifications and the config version.
//!
//! Every admin write bumps `config_version` (one row) in its own transaction and, on
//! PostgreSQL, runs `pg_notify(channel, 'kind:id@v<version>')` there too: the notification is
//! delivered iff the write commits, to every node listening on the channel. The channel is
//! per database schema ([`config_channel`]), so fleets sharing one database never hear each
//! other. SQLite: the same process's writes are fanned out to in-process subscribers.
//!
//! [`Store::subscribe_config_changes_as`] opens a dedicated `tokio-postgres` connection
//! (`application_name` `ringgate-listen …`, findable in `pg_stat_activity`), issues `LISTEN`
//! and drives it with `poll_message` on a spawned task. When that connection is lost (an
//! error, a server restart, `pg_terminate_backend`) the task reconnects with exponential
//! backoff (100 ms doubling to 5 s) and, once listening again, delivers
//! [`ConfigEvent::Resubscribed`]: changes in between were missed, reload everything. A
//! subscription ends (`recv` returns `None`) only when it is dropped.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::AsyncMessage;

use crate::db::{Db, Stmt};
use crate::error::{Error, Result};
use crate::model::{ConfigChange, ConfigKind};
use crate::Store;

/// The PostgreSQL notification channel without a schema; with one it is
/// `ringgate_config_<schema>` ([`config_channel`]).
pub const CONFIG_CHANNEL: &str = "ringgate_config";

/// The `application_name` of LISTEN connections (followed by the node id when known).
pub const LISTEN_APPLICATION_NAME: &str = "ringgate-listen";

/// First wait before reconnecting a lost LISTEN connection; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer channel names are refused
/// by `pg_notify` and truncated by `LISTEN`.
const MAX_IDENT: usize = 63;

/// The notification channel of a database schema: `ringgate_config` without one,
/// `ringgate_config_<schema>` with one. A name longer than PostgreSQL keeps is shortened to
/// a prefix of the schema and a hash of the whole name, the same on every node.
pub fn config_channel(schema: Option<&str>) -> String {
    let Some(schema) = schema else {
        return CONFIG_CHANNEL.to_owned();
    };
    let full = format!("{CONFIG_CHANNEL}_{schema}");
    if full.len() <= MAX_IDENT {
        return full;
    }
    // FNV-1a: stable across builds and processes (unlike std's hasher).
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // Schema names are ASCII (validated), so byte slicing is on char boundaries.
    format!("{}_{hash:016x}", &full[..MAX_IDENT - 17])
}

/// Bumps the config version (creating its row if it is missing) and returns it.
const BUMP_VERSION: &str = "INSERT INTO config_version (id, version) VALUES (1, 1) \
     ON CONFLICT (id) DO UPDATE SET version = config_version.version + 1 RETURNING version";

/// PostgreSQL: bumps the config version and notifies `channel` of `change` at that version,
/// in one statement; returns one row with the version.
fn pg_bump_notify_stmt(channel: &str, change: &ConfigChange) -> Stmt {
    Stmt::new(
        format!(
            "WITH v AS ({BUMP_VERSION}) \
             SELECT version, pg_notify($1, $2 || '@v' || version) FROM v"
        ),
        vec![channel.into(), change.payload().into()],
    )
}

/// The statement an admin write adds to its transaction: bumps the config version (and on
/// PostgreSQL notifies every node); its one row holds the new version.
pub(crate) fn bump_stmt(db: &Db, change: &ConfigChange) -> Stmt {
    match db {
        Db::Postgres(pg) => pg_bump_notify_stmt(pg.channel(), change),
        Db::Sqlite(_) => Stmt::new(BUMP_VERSION, Vec::new()),
    }
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEvent {
    /// Entity `change.id` of `change.kind` changed; `version` is the config version its
    /// write set (`None` from a node that predates config versions).
    Changed {
        change: ConfigChange,
        version: Option<u64>,
    },
    /// The LISTEN connection was lost and is listening again: changes in between were
    /// missed, so everything should be re-read.
    Resubscribed,
}

/// A stream of [`ConfigEvent`]s.
pub struct ConfigSubscription {
    rx: mpsc::UnboundedReceiver<ConfigEvent>,
    /// Whether the LISTEN connection is up (always true on SQLite).
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConfigSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSubscription")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl ConfigSubscription {
    /// The next change, skipping [`ConfigEvent::Resubscribed`]; `None` once the
    /// subscription has ended.
    pub async fn recv(&mut self) -> Option<ConfigChange> {
        loop {
            if let ConfigEvent::Changed { change, .. } = self.rx.recv().await? {
                return Some(change);
            }
        }
    }

    /// A change if one is already queued (skipping [`ConfigEvent::Resubscribed`]).
    pub fn try_recv(&mut self) -> Option<ConfigChange> {
        loop {
            if let ConfigEvent::Changed { change, .. } = self.rx.try_recv().ok()? {
                return Some(change);
            }
        }
    }

    /// The next event; `None` once the subscription has ended.
    pub async fn next_event(&mut self) -> Option<ConfigEvent> {
        self.rx.recv().await
    }

    /// An event if one is already queued.
    pub fn try_next_event(&mut self) -> Option<ConfigEvent> {
        self.rx.try_recv().ok()
    }

    /// Whether the LISTEN connection is up right now (always true on SQLite).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl Store {
    /// Tells every subscriber (all nodes on PostgreSQL) that entity `id` of `kind` changed,
    /// bumping the config version. CRUD methods do this themselves, in their transaction.
    pub async fn notify_config_changed(&self, kind: ConfigKind, id: &str) -> Result<()> {
        let change = ConfigChange {
            kind,
            id: id.to_owned(),
        };
        let s = bump_stmt(self.db(), &change);
        let rows = self.db().query(&s.sql, s.params).await?;
        let version = bumped_version(&rows)?;
        if let Db::Sqlite(_) = self.db() {
            self.notify_local(&change, version);
        }
        Ok(())
    }

    /// The stored config version: bumped by every admin write, 0 before the first.
    pub async fn config_version(&self) -> Result<u64> {
        let rows = self
            .db()
            .query(
                "SELECT version FROM config_version WHERE id = 1",
                Vec::new(),
            )
            .await?;
        match rows.first() {
            Some(row) => row.u64(0),
            None => Ok(0),
        }
    }

    pub(crate) fn notify_local(&self, change: &ConfigChange, version: u64) {
        let event = ConfigEvent::Changed {
            change: change.clone(),
            version: Some(version),
        };
        let mut subs = self
            .inner
            .local_subs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// [`Store::subscribe_config_changes_as`] without a node id.
    pub async fn subscribe_config_changes(&self) -> Result<ConfigSubscription> {
        self.subscribe_config_changes_as(None).await
    }

    /// Subscribes to config changes. On PostgreSQL the `LISTEN` is active when this returns,
    /// so any change committed afterwards is delivered; its connection is named
    /// `ringgate-listen <node>` (or `ringgate-listen`) in `pg_stat_activity`, and is
    /// re-established whenever it is lost (see the module docs). An error here means the
    /// first connection failed; nothing is retried then.
    pub async fn subscribe_config_changes_as(
        &self,
        node: Option<&str>,
    ) -> Result<ConfigSubscription> {
        let (tx, rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(true));
        match self.db() {
            Db::Sqlite(_) => {
                self.inner
                    .local_subs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(tx);
            }
            Db::Postgres(_) => {
                let app_name = match node {
                    Some(node) => format!("{LISTEN_APPLICATION_NAME} {node}"),
                    None => LISTEN_APPLICATION_NAME.to_owned(),
                };
                let (ready_tx, ready_rx) = oneshot::channel();
                let listener = Listener {
                    store: self.clone(),
                    app_name,
                    tx,
                    connected: connected.clone(),
                };
                tokio::spawn(listener.run(ready_tx));
                ready_rx.await.unwrap_or_else(|_| {
                    Err(Error::Config(
                        "config listener ended before listening".into(),
                    ))
                })?;
            }
        }
        Ok(ConfigSubscription { rx, connected })
    }
}

/// The version an admin write set: read from the rows of its [`bump_stmt`].
pub(crate) fn bumped_version(rows: &[crate::db::Row]) -> Result<u64> {
    match rows.first() {
        Some(row) => row.u64(0),
        None => Err(Error::Corrupt("config version bump returned no row".into())),
    }
}

/// Why a LISTEN connection stopped.
enum Ended {
    /// The subscription was dropped.
    Unsubscribed,
    /// The connection failed or closed.
    Lost(Error),
}

/// The task behind a PostgreSQL subscription.
struct Listener {
    store: Store,
    app_name: String,
    tx: mpsc::UnboundedSender<ConfigEvent>,
    connected: Arc<AtomicBool>,
}

impl Listener {
    /// Listens until the subscription is dropped, reconnecting with backoff. The first
    /// connection's outcome goes to `ready`; if it fails the task ends.
    async fn run(self, ready: oneshot::Sender<Result<()>>) {
        let mut ready = Some(ready);
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut listening = false;
            let ended = self
                .listen_once(|| {
                    listening = true;
                    match ready.take() {
                        // The subscriber is waiting for the first LISTEN.
                        Some(ready) => drop(ready.send(Ok(()))),
                        None => drop(self.tx.send(ConfigEvent::Resubscribed)),
                    }
                })
                .await;
            self.connected.store(false, Ordering::Relaxed);
            let error = match ended {
                Ended::Unsubscribed => return,
                Ended::Lost(e) => e,
            };
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(error));
                return;
            }
            if listening {
                backoff = BACKOFF_MIN;
                tracing::warn!(error = %error, "config LISTEN connection lost; reconnecting");
            } else {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "config LISTEN reconnect failed");
            }
            tokio::select! {
                () = self.tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            if !listening {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// One connection: connects, LISTENs (then calls `on_listening`), forwards notifications
    /// until the connection ends or the subscription is dropped.
    async fn listen_once(&self, on_listening: impl FnOnce()) -> Ended {
        let Db::Postgres(pg) = self.store.db() else {
            return Ended::Unsubscribed;
        };
        let channel = pg.channel();
        let connect = pg.connect_dedicated(&self.app_name);
        let (client, mut conn) = tokio::select! {
            () = self.tx.closed() => return Ended::Unsubscribed,
            r = connect => match r {
                Ok(pair) => pair,
                Err(e) => return Ended::Lost(e),
            },
        };
        // Quoted: the channel is case-sensitive in pg_notify.
        let listen_sql = format!("LISTEN \"{channel}\"");
        let listen = client.batch_execute(&listen_sql);
        tokio::pin!(listen);
        let mut on_listening = Some(on_listening);
        loop {
            tokio::select! {
                () = self.tx.closed() => return Ended::Unsubscribed,
                r = &mut listen, if on_listening.is_some() => match r {
                    Ok(()) => {
                        self.connected.store(true, Ordering::Relaxed);
                        if let Some(f) = on_listening.take() {
                            f();
                        }
                    }
                    Err(e) => return Ended::Lost(e.into()),
                },
                msg = poll_fn(|cx| conn.poll_message(cx)) => match msg {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if n.channel() != channel {
                            continue;
                        }
                        match ConfigChange::parse_versioned_payload(n.payload()) {
                            Some((change, version)) => {
                                if self.tx.send(ConfigEvent::Changed { change, version }).is_err() {
                                    return Ended::Unsubscribed;
                                }
                            }
                            None => tracing::warn!(
                                payload = n.payload(),
                                "ignoring malformed config notification"
                            ),
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Lost(e.into()),
                    None => {
                        return Ended::Lost(Error::Config("config LISTEN connection closed".into()))
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_per_schema() {
        assert_eq!(config_channel(None), "ringgate_config");
        assert_eq!(config_channel(Some("fleet_a")), "ringgate_config_fleet_a");
        let long = "s".repeat(63);
        let c = config_channel(Some(&long));
        assert_eq!(c.len(), MAX_IDENT);
        assert_eq!(c, config_channel(Some(&long)));
        let other = format!("{}t", "s".repeat(62));
        assert_ne!(c, config_channel(Some(&other)));
    }

    #[test]
    fn payloads_old_and_new() {
        let key = |id: &str| ConfigChange {
            kind: ConfigKind::Key,
            id: id.into(),
        };
        assert_eq!(
            ConfigChange::parse_versioned_payload("key:abc@v42"),
            Some((key("abc"), Some(42)))
        );
        // The older form, without a version.
        assert_eq!(
            ConfigChange::parse_versioned_payload("key:abc"),
            Some((key("abc"), None))
        );
        // Only a trailing `@v<digits>` is a version.
        assert_eq!(
            ConfigChange::parse_versioned_payload("key:a@v1@v7"),
            Some((key("a@v1"), Some(7)))
        );
        assert_eq!(
            ConfigChange::parse_versioned_payload("key:a@vx"),
            Some((key("a@vx"), None))
        );
        assert_eq!(ConfigChange::parse_payload("key:abc@v3"), Some(key("abc")));
        assert_eq!(ConfigChange::parse_versioned_payload("nope:abc@v3"), None);
        assert_eq!(ConfigChange::parse_versioned_payload("key"), None);
    }
}
