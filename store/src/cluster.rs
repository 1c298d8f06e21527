//! The fleet's membership and leadership (PostgreSQL; docs/cluster.md).
//!
//! Every node keeps a row in `cluster_nodes` and beats on it; times are the database's clock,
//! so nodes with skewed clocks agree on who is late. A node missing for longer than its own
//! `ttl_ms` is dead: [`Store::reap_dead_nodes`] hands its shares back to the counters and
//! removes it, in one transaction, and a node that finds its own row gone (it was taken for
//! dead) learns so from [`Store::heartbeat`]. One node leads — the holder of a session-level
//! advisory lock on its own connection ([`Leadership`]) — and runs the singleton jobs; when
//! it dies, its connection closes, the lock goes free, and the next node to try takes it.

use std::future::poll_fn;

use crate::db::{Db, Stmt, Value};
use crate::error::{Error, Result};
use crate::Store;

/// What a node says about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRecord {
    pub node_id: String,
    /// Where its control port is reached.
    pub address: String,
    pub region: String,
    pub version: String,
    pub shards: u64,
    /// Unix seconds.
    pub started_at: i64,
    pub ttl_ms: u64,
    pub draining: bool,
    /// It held the leader's lock at this heartbeat.
    pub leader: bool,
}

/// A node as the fleet sees it: what it said at its last heartbeat, and how long ago.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    #[serde(flatten)]
    pub node: NodeRecord,
    /// Milliseconds since its last heartbeat (database clock).
    pub heartbeat_age_ms: i64,
    pub alive: bool,
}

/// The database's clock in unix milliseconds.
fn now_ms_sql(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Db::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

impl Store {
    /// Records that `node` is alive now. Returns false when its row was missing although it
    /// had beaten before (`known`): a survivor took it for dead and handed its shares back.
    pub async fn heartbeat(&self, node: &NodeRecord, known: bool) -> Result<bool> {
        let now = now_ms_sql(self.db());
        let upsert = format!(
            "INSERT INTO cluster_nodes (node_id, address, region, version, shards, started_at, \
                heartbeat_ms, ttl_ms, draining, leader) \
             VALUES ($1, $2, $3, $4, $5, $6, {now}, $7, $8, $9) \
             ON CONFLICT (node_id) DO UPDATE SET address = excluded.address, \
                heartbeat_ms = excluded.heartbeat_ms, ttl_ms = excluded.ttl_ms, \
                draining = excluded.draining, leader = excluded.leader"
        );
        let params: Vec<Value> = vec![
            node.node_id.as_str().into(),
            node.address.as_str().into(),
            node.region.as_str().into(),
            node.version.as_str().into(),
            crate::db::to_i64(node.shards, "shards")?.into(),
            node.started_at.into(),
            crate::db::to_i64(node.ttl_ms, "ttl_ms")?.into(),
            node.draining.into(),
            node.leader.into(),
        ];
        let out = self
            .db()
            .transaction(vec![
                Stmt::new(
                    "SELECT COUNT(*) FROM cluster_nodes WHERE node_id = $1",
                    vec![node.node_id.as_str().into()],
                ),
                Stmt::new(upsert, params),
            ])
            .await?;
        let present = out
            .first()
            .and_then(|rows| rows.first())
            .ok_or_else(|| Error::Corrupt("COUNT returned no row".into()))?
            .u64(0)?
            > 0;
        Ok(present || !known)
    }

    /// Every registered node, alive or not yet reaped, oldest first.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        let now = now_ms_sql(self.db());
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT node_id, address, region, version, shards, started_at, \
                        {now} - heartbeat_ms, ttl_ms, draining, leader \
                     FROM cluster_nodes ORDER BY started_at, node_id"
                ),
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let (age, ttl_ms) = (r.i64(6)?, r.u64(7)?);
                Ok(NodeInfo {
                    node: NodeRecord {
                        node_id: r.text(0)?,
                        address: r.text(1)?,
                        region: r.text(2)?,
                        version: r.text(3)?,
                        shards: r.u64(4)?,
                        started_at: r.i64(5)?,
                        ttl_ms,
                        draining: r.bool(8)?,
                        leader: r.bool(9)?,
                    },
                    heartbeat_age_ms: age,
                    alive: age <= ttl_ms as i64,
                })
            })
            .collect()
    }

    /// Hands back the shares of every node whose heartbeat is older than its ttl and removes
    /// it; returns the ids reaped. Each node goes in its own transaction, which re-checks that
    /// it is still late (a node that beat in between is left alone).
    pub async fn reap_dead_nodes(&self) -> Result<Vec<String>> {
        let now = now_ms_sql(self.db());
        let late = self
            .db()
            .query(
                &format!("SELECT node_id FROM cluster_nodes WHERE heartbeat_ms < {now} - ttl_ms"),
                vec![],
            )
            .await?;
        let mut reaped = Vec::new();
        for row in late {
            let id = row.text(0)?;
            let gone = self
                .db()
                .transaction(vec![
                    Stmt::new(
                        format!(
                            "DELETE FROM cluster_nodes WHERE node_id = $1 \
                             AND heartbeat_ms < {now} - ttl_ms RETURNING node_id"
                        ),
                        vec![id.as_str().into()],
                    ),
                    Stmt::new(
                        "UPDATE limit_counters AS c SET used = GREATEST(0, c.used - s.held) \
                         FROM limit_shares AS s WHERE s.node_id = $1 \
                            AND NOT EXISTS (SELECT 1 FROM cluster_nodes WHERE node_id = $1) \
                            AND c.entity_kind = s.entity_kind AND c.entity_id = s.entity_id \
                            AND c.limit_name = s.limit_name AND c.window_start = s.window_start",
                        vec![id.as_str().into()],
                    ),
                    Stmt::new(
                        "DELETE FROM limit_shares WHERE node_id = $1 \
                         AND NOT EXISTS (SELECT 1 FROM cluster_nodes WHERE node_id = $1)",
                        vec![id.as_str().into()],
                    ),
                ])
                .await?;
            if out_has_rows(&gone) {
                reaped.push(id);
            }
        }
        Ok(reaped)
    }

    /// A node leaves cleanly (after giving back its unused units and flushing its usage):
    /// what it still holds counts as spent, and its row goes.
    pub async fn leave_fleet(&self, node_id: &str) -> Result<()> {
        self.db()
            .transaction(vec![
                Stmt::new(
                    "DELETE FROM limit_shares WHERE node_id = $1",
                    vec![node_id.into()],
                ),
                Stmt::new(
                    "DELETE FROM cluster_nodes WHERE node_id = $1",
                    vec![node_id.into()],
                ),
            ])
            .await?;
        Ok(())
    }

    /// Units node `node_id` holds over all its shares (for metrics).
    pub async fn shares_held(&self, node_id: &str) -> Result<u64> {
        let rows = self
            .db()
            .query(
                "SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM limit_shares WHERE node_id = $1",
                vec![node_id.into()],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.u64(0))
    }

    /// A connection of its own for the leader's lock (PostgreSQL only).
    pub async fn leadership(&self) -> Result<Leadership> {
        let Db::Postgres(pg) = self.db() else {
            return Err(Error::Config(
                "leadership needs PostgreSQL: SQLite is single-node".into(),
            ));
        };
        let (client, mut conn) = pg.connect_dedicated("ringgate-leader").await?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // Drives the connection until it closes; the lock goes with it.
            while let Some(msg) = poll_fn(|cx| conn.poll_message(cx)).await {
                if msg.is_err() {
                    break;
                }
            }
            let _ = closed_tx.send(());
        });
        Ok(Leadership {
            client,
            closed: closed_rx,
            leading: false,
        })
    }
}

fn out_has_rows(out: &[Vec<crate::db::Row>]) -> bool {
    out.first().is_some_and(|rows| !rows.is_empty())
}

/// One node's claim on the fleet's leadership: a session-level advisory lock keyed by the
/// schema, held as long as this connection lives.
pub struct Leadership {
    client: tokio_postgres::Client,
    closed: tokio::sync::oneshot::Receiver<()>,
    leading: bool,
}

impl Leadership {
    /// Whether this node leads now, taking the lock if it is free. An error means the
    /// connection is gone (and with it the lock, if it was held): make a new [`Leadership`].
    pub async fn try_lead(&mut self) -> Result<bool> {
        if self.closed.try_recv() != Err(tokio::sync::oneshot::error::TryRecvError::Empty) {
            self.leading = false;
            return Err(Error::Config("leadership connection closed".into()));
        }
        if self.leading {
            self.client.simple_query("SELECT 1").await?;
            return Ok(true);
        }
        let row = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('ringgate-leader:' || current_schema()))",
                &[],
            )
            .await?;
        self.leading = row.get::<_, bool>(0);
        Ok(self.leading)
    }
}
