-- Request logs as segments (store/src/logs/segment.rs): each usage batch's logs are one row
-- here, their rows encoded as one byte string, instead of a row per request in
-- request_logs with four B-tree inserts each (the table, its primary key, the ts_ms and
-- (key_id, ts_ms, id) indexes): that row was ~2.9 µs of the node's CPU per logged request,
-- the largest single cost of governance (docs/perf.md).
--
-- min_ts/max_ts bound a segment's rows in time (searches read segments newest max_ts
-- first, and retention drops whole segments); id_hashes lists the sorted FNV-1a hashes of
-- its ids and client ids (a search by request id opens only the segments that may hold it).
-- The rows of request_logs are moved into segments when the store opens, and the table is
-- dropped then (store/src/logs/sqlite.rs).
CREATE TABLE request_log_segments (
    seq       INTEGER PRIMARY KEY,
    min_ts    INTEGER NOT NULL,
    max_ts    INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    rows      BLOB NOT NULL,
    id_hashes BLOB NOT NULL
);
CREATE INDEX request_log_segments_max_ts ON request_log_segments (max_ts);

-- What a segment holds, one row per distinct value of a field its searches filter on:
-- field 1 key, 2 team, 3 customer, 4 provider, 5 model, 6 error code, 7 cache kind.
CREATE TABLE request_log_terms (
    field INTEGER NOT NULL,
    value TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (field, value, seq)
) WITHOUT ROWID;
CREATE INDEX request_log_terms_seq ON request_log_terms (seq);
