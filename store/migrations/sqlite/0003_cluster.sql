-- A fleet of nodes on one database (docs/cluster.md).

-- Every node that runs on this database: registered at start, heartbeat every few seconds
-- (database clock, milliseconds), removed when it stops cleanly or when a survivor finds it
-- missing for longer than its node_ttl.
CREATE TABLE cluster_nodes (
    node_id      TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    region       TEXT NOT NULL DEFAULT '',
    version      TEXT NOT NULL,
    shards       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    ttl_ms       INTEGER NOT NULL,
    draining     INTEGER NOT NULL DEFAULT 0,
    -- Said by the node itself at its last heartbeat: it held the leader's lock.
    leader       INTEGER NOT NULL DEFAULT 0
);

-- What each node holds of each shared limit counter: units leased and neither given back
-- nor settled by the node's flushed usage. `limit_counters.used` is the sum of these over
-- live nodes plus what was spent; a dead node's holding goes back to the counter.
CREATE TABLE limit_shares (
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    limit_name   TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    node_id      TEXT NOT NULL,
    held         INTEGER NOT NULL,
    PRIMARY KEY (entity_kind, entity_id, limit_name, window_start, node_id)
);
CREATE INDEX limit_shares_node ON limit_shares (node_id);

-- The version of the governance config, bumped in the same transaction as every admin
-- write: a node that missed a notification sees the new version and reloads.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

-- The config version a counter's limit_value was set by: a node on an older version
-- cannot raise a lowered limit back.
ALTER TABLE limit_counters ADD COLUMN config_version INTEGER NOT NULL DEFAULT 0;
