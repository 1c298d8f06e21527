-- Nothing on PostgreSQL: request logs stay a row per request here (the database server
-- indexes them off the nodes, and a fleet's nodes search one table). SQLite keeps them as
-- segments from this version on (migrations/sqlite/0009_request_log_segments.sql).
SELECT 1;
