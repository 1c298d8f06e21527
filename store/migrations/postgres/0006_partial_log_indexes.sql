-- Every request-log row paid for a B-tree insert in each index of migration 0005, even
-- when the column is NULL (most rows have no team, no customer, no client request id).
-- A partial index holds only the rows a filter can find: `col = ?` implies
-- `col IS NOT NULL`, so both backends still answer the searches from these indexes, and a
-- row without the column touches none of them.
DROP INDEX request_logs_client_request_id;
DROP INDEX request_logs_team_ts;
DROP INDEX request_logs_customer_ts;
CREATE INDEX request_logs_client_request_id ON request_logs (client_request_id)
    WHERE client_request_id IS NOT NULL;
CREATE INDEX request_logs_team_ts ON request_logs (team_id, ts_ms, id)
    WHERE team_id IS NOT NULL;
CREATE INDEX request_logs_customer_ts ON request_logs (customer_id, ts_ms, id)
    WHERE customer_id IS NOT NULL;
