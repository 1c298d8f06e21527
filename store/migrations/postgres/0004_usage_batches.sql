-- Usage batches already written, by id: a batch replayed from a node's local spool after a
-- crash or a database outage is written at most once.
CREATE TABLE usage_batches (
    batch_id   TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
