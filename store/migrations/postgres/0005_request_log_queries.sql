-- Request logs can be searched (GET /admin/request-logs): by the id the client sent in
-- x-request-id, and by key, team or customer, newest first. Each index ends with
-- (ts_ms, id), the listing's order and its paging cursor, so that a filtered page is read
-- in order from the index without sorting; the request_id filter (id or client_request_id)
-- uses the primary key and the index on client_request_id.
ALTER TABLE request_logs ADD COLUMN client_request_id TEXT;
CREATE INDEX request_logs_client_request_id ON request_logs (client_request_id);
CREATE INDEX request_logs_key_ts ON request_logs (key_id, ts_ms, id);
CREATE INDEX request_logs_team_ts ON request_logs (team_id, ts_ms, id);
CREATE INDEX request_logs_customer_ts ON request_logs (customer_id, ts_ms, id);
