-- The semantic cache beside the exact one: a cached answer may carry the request's
-- embedding, so that a node can answer a request that means the same as one any node of the
-- fleet answered. `partition` is the SHA-256 of everything in the request but its last user
-- turn (32 bytes): only requests of one partition may answer each other. `embedding` is the
-- request's embedding as little-endian f32s. Both NULL for an answer the semantic cache does
-- not keep.
ALTER TABLE response_cache ADD COLUMN partition BLOB;
ALTER TABLE response_cache ADD COLUMN embedding BLOB;

-- Every node follows the embeddings the others cache by asking, every half second or so, for
-- those created since a moment just before its last look, in created order. The partial
-- index holds only the rows with an embedding, in that order, so that the question reads
-- the few new ones and an answer without an embedding pays nothing for it (as in migration
-- 0006).
CREATE INDEX response_cache_embedded_created ON response_cache (created_ms, key)
    WHERE embedding IS NOT NULL;
