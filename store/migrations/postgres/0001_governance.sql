-- ringgate store, PostgreSQL dialect: governance entities, usage, logs, leases.
-- Money is integer nano-dollars; times are unix seconds unless named *_ms.

CREATE TABLE customers (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    budget_limit_nanos BIGINT,
    budget_period      TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'never')),
    rpm BIGINT, rph BIGINT, rpd BIGINT, tpm BIGINT, tph BIGINT, tpd BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE teams (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    customer_id        TEXT REFERENCES customers (id) ON DELETE RESTRICT,
    budget_limit_nanos BIGINT,
    budget_period      TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'never')),
    rpm BIGINT, rph BIGINT, rpd BIGINT, tpm BIGINT, tph BIGINT, tpd BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
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
    budget_limit_nanos BIGINT,
    budget_period      TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'never')),
    rpm BIGINT, rph BIGINT, rpd BIGINT, tpm BIGINT, tph BIGINT, tpd BIGINT,
    expires_at         BIGINT,
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX virtual_keys_team_id ON virtual_keys (team_id);

CREATE TABLE providers (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    config_json TEXT NOT NULL DEFAULT '{}',
    secret      TEXT,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE usage (
    entity_kind       TEXT NOT NULL,
    entity_id         TEXT NOT NULL,
    period_start      BIGINT NOT NULL,
    spent_nanos       BIGINT NOT NULL DEFAULT 0,
    requests          BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    reset_at          BIGINT,
    last_reset_spent  BIGINT NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (entity_kind, entity_id, period_start)
);

CREATE TABLE budget_resets (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    reset_at     BIGINT NOT NULL,
    spent_before BIGINT NOT NULL
);
CREATE INDEX budget_resets_entity ON budget_resets (entity_kind, entity_id);

CREATE TABLE request_logs (
    id                TEXT PRIMARY KEY,
    ts_ms             BIGINT NOT NULL,
    key_id            TEXT,
    team_id           TEXT,
    customer_id       TEXT,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    status            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_nanos        BIGINT NOT NULL,
    latency_us        BIGINT NOT NULL,
    overhead_us       BIGINT NOT NULL,
    stream            BOOLEAN NOT NULL,
    error_code        TEXT
);
CREATE INDEX request_logs_ts ON request_logs (ts_ms);

CREATE TABLE limit_counters (
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    limit_name   TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    limit_value  BIGINT NOT NULL,
    last_grant   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_kind, entity_id, limit_name, window_start)
);
