//! Config-change notifications.
//!
//! PostgreSQL: writes run `SELECT pg_notify('ringgate_config', 'kind:id')`
//! in their own transaction (delivered iff the write commits, to every
//! node); [`Store::subscribe_config_changes`] opens a dedicated
//! `tokio-postgres` connection, issues `LISTEN ringgate_config` and drives
//! it with `poll_message` on a spawned task. SQLite: the same process's
//! writes are fanned out to in-process subscribers.
//!
//! A subscription ends (`recv` returns `None`) if its connection is lost;
//! the caller should then resubscribe and reload everything, since changes
//! in between were missed.

use std::future::poll_fn;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::db::{Db, Stmt};
use crate::error::Result;
use crate::model::{ConfigChange, ConfigKind};
use crate::Store;

/// The PostgreSQL notification channel.
pub const CONFIG_CHANNEL: &str = "ringgate_config";

pub(crate) fn pg_notify_stmt(change: &ConfigChange) -> Stmt {
    Stmt::new(
        "SELECT pg_notify($1, $2)",
        vec![CONFIG_CHANNEL.into(), change.payload().into()],
    )
}

/// A stream of [`ConfigChange`]s.
pub struct ConfigSubscription {
    rx: mpsc::UnboundedReceiver<ConfigChange>,
    /// Keeps the LISTEN connection open (PostgreSQL); dropping the
    /// subscription closes it and ends the driver task.
    _client: Option<tokio_postgres::Client>,
}

impl std::fmt::Debug for ConfigSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSubscription").finish_non_exhaustive()
    }
}

impl ConfigSubscription {
    /// The next change; `None` once the subscription has ended.
    pub async fn recv(&mut self) -> Option<ConfigChange> {
        self.rx.recv().await
    }

    /// A change if one is already queued.
    pub fn try_recv(&mut self) -> Option<ConfigChange> {
        self.rx.try_recv().ok()
    }
}

impl Store {
    /// Tells every subscriber (all nodes on PostgreSQL) that entity `id` of
    /// `kind` changed. CRUD methods call this themselves.
    pub async fn notify_config_changed(&self, kind: ConfigKind, id: &str) -> Result<()> {
        let change = ConfigChange {
            kind,
            id: id.to_owned(),
        };
        match self.db() {
            Db::Postgres(_) => {
                let s = pg_notify_stmt(&change);
                self.db().query(&s.sql, s.params).await?;
            }
            Db::Sqlite(_) => self.notify_local(&change),
        }
        Ok(())
    }

    pub(crate) fn notify_local(&self, change: &ConfigChange) {
        let mut subs = self
            .inner
            .local_subs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| tx.send(change.clone()).is_ok());
    }

    /// Subscribes to config changes. On PostgreSQL the `LISTEN` is active
    /// when this returns, so any change committed afterwards is delivered.
    pub async fn subscribe_config_changes(&self) -> Result<ConfigSubscription> {
        let (tx, rx) = mpsc::unbounded_channel();
        match self.db() {
            Db::Sqlite(_) => {
                self.inner
                    .local_subs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(tx);
                Ok(ConfigSubscription { rx, _client: None })
            }
            Db::Postgres(pg) => {
                let (client, mut conn) = pg.connect_dedicated().await?;
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = tx.closed() => break,
                            msg = poll_fn(|cx| conn.poll_message(cx)) => match msg {
                                Some(Ok(AsyncMessage::Notification(n))) => {
                                    if n.channel() != CONFIG_CHANNEL {
                                        continue;
                                    }
                                    match ConfigChange::parse_payload(n.payload()) {
                                        Some(change) => {
                                            if tx.send(change).is_err() {
                                                break;
                                            }
                                        }
                                        None => tracing::warn!(
                                            payload = n.payload(),
                                            "ignoring malformed config notification"
                                        ),
                                    }
                                }
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "config LISTEN connection failed");
                                    break;
                                }
                                None => break,
                            },
                        }
                    }
                });
                client
                    .batch_execute(&format!("LISTEN {CONFIG_CHANNEL}"))
                    .await?;
                Ok(ConfigSubscription {
                    rx,
                    _client: Some(client),
                })
            }
        }
    }
}
