-- ringgate store, SQLite dialect: governance entities, usage, logs, leases.
-- Money is integer nano-dollars; times are unix seconds unless named *_ms.

CREATE TABLE customers (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    budget_limit_nanos INTEGER,
    budget_period      TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'never')),
    rpm INTEGER, rph INTEGER, rpd INTEGER, tpm INTEGER, tph INTEGER, tpd INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE teams (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    customer_id        TEXT REFERENCES customers (id) ON DELETE RESTRICT,
    budget_limit_nanos INTEGER,
    budget_period      TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'never')),
    rpm INTEGER, rph INTEGER, rpd INTEGER, tpm INTEGER, tph INTEGER, tpd INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX teams_customer_id ON teams (customer_id);

CREATE TABLE virtual_keys (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    key_hash           TEXT NOT NULL UNIQUE,
    key_prefix         TEXT NOT NULL,
    team_id            TEXT REFERENCES teams (id) ON DELETE RESTRICT,
    allowed_providers  TEXT NOT NULL DEFAULT '[]',
    allowed_models     TEXT NOT NULL DEFAULT '[]',
    budget_limit_nanos INTEGER,
    budget_period      TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'never')),
    rpm INTEGER, rph INTEGER, rpd INTEGER, tpm INTEGER, tph INTEGER, tpd INTEGER,
    expires_at         INTEGER,
    active             INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX virtual_keys_team_id ON virtual_keys (team_id);

CREATE TABLE providers (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    config_json TEXT NOT NULL DEFAULT '{}',
    secret      TEXT,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE usage (
    entity_kind       TEXT NOT NULL,
    entity_id         TEXT NOT NULL,
    period_start      INTEGER NOT NULL,
    spent_nanos       INTEGER NOT NULL DEFAULT 0,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reset_at          INTEGER,
    last_reset_spent  INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (entity_kind, entity_id, period_start)
);

CREATE TABLE budget_resets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    reset_at     INTEGER NOT NULL,
    spent_before INTEGER NOT NULL
);
CREATE INDEX budget_resets_entity ON budget_resets (entity_kind, entity_id);

CREATE TABLE request_logs (
    id                TEXT PRIMARY KEY,
    ts_ms             INTEGER NOT NULL,
    key_id            TEXT,
    team_id           TEXT,
    customer_id       TEXT,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    status            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_nanos        INTEGER NOT NULL,
    latency_us        INTEGER NOT NULL,
    overhead_us       INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    error_code        TEXT
);
CREATE INDEX request_logs_ts ON request_logs (ts_ms);

CREATE TABLE limit_counters (
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    limit_name   TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    limit_value  INTEGER NOT NULL,
    last_grant   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_kind, entity_id, limit_name, window_start)
);
