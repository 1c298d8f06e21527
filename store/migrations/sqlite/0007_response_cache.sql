-- The response cache.
--
-- A virtual key's own cache setting: NULL follows the configuration, 0 turns caching off
-- for the key's requests, N > 0 caches each cacheable answer N seconds.
ALTER TABLE virtual_keys ADD COLUMN cache_ttl_secs INTEGER;

-- Requests the cache answered: which cache ('exact' or 'semantic'), and what the answer
-- cost when it was first made — its tokens (prompt + completion) and nano-dollars. NULL for
-- every request the cache did not answer. The partial index holds only the hits, so that
-- `cache = …` and `cache IS NOT NULL` read them newest first and every other row pays
-- nothing for it (as in migration 0006).
ALTER TABLE request_logs ADD COLUMN cache TEXT;
ALTER TABLE request_logs ADD COLUMN saved_tokens INTEGER;
ALTER TABLE request_logs ADD COLUMN saved_cost_nanos INTEGER;
CREATE INDEX request_logs_cache_ts ON request_logs (ts_ms, id) WHERE cache IS NOT NULL;

-- The fleet tier of the exact cache: one row per cached answer. `key` is the SHA-256 of the
-- scope and the normalised request (32 bytes), `body` the compressed canonical response,
-- `meta` a small JSON object the data plane writes (opaque to the store). An entry is
-- served until `expires_ms` (Unix milliseconds); the housekeeping deletes it after that.
CREATE TABLE response_cache (
    key        BLOB PRIMARY KEY,
    body       BLOB NOT NULL,
    meta       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    node_id    TEXT
);
CREATE INDEX response_cache_expires ON response_cache (expires_ms);
