-- A fleet of nodes on one database (docs/cluster.md).

-- Every node that runs on this database: registered at start, heartbeat every few seconds
-- (database clock, milliseconds), removed when it stops cleanly or when a survivor finds it
-- missing for longer than its node_ttl.
CREATE TABLE cluster_nodes (
    node_id      TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    region       TEXT NOT NULL DEFAULT '',
    version      TEXT NOT NULL,
    shards       BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    ttl_ms       BIGINT NOT NULL,
    draining     BOOLEAN NOT NULL DEFAULT FALSE,
    -- Said by the node itself at its last heartbeat: it held the leader's lock.
    leader       BOOLEAN NOT NULL DEFAULT FALSE
);

-- What each node holds of each shared limit counter: units leased and neither given back
-- nor settled by the node's flushed usage. `limit_counters.used` is the sum of these over
-- live nodes plus what was spent; a dead node's holding goes back to the counter.
CREATE TABLE limit_shares (
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    limit_name   TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    node_id      TEXT NOT NULL,
    held         BIGINT NOT NULL,
    PRIMARY KEY (entity_kind, entity_id, limit_name, window_start, node_id)
);
CREATE INDEX limit_shares_node ON limit_shares (node_id);

-- The version of the governance config, bumped in the same transaction as every admin
-- write: a node that missed a notification sees the new version and reloads.
CREATE TABLE config_version (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

-- The config version a counter's limit_value was set by: a node on an older version
-- cannot raise a lowered limit back.
ALTER TABLE limit_counters ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0;
