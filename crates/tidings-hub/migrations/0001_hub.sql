-- The hub's tables on PostgreSQL (see src/store/postgres.rs). Forward-only: a later version
-- adds a migration, never edits this one.

CREATE TABLE subscriptions (
    id BYTEA PRIMARY KEY,               -- the first 16 bytes of the SHA-256 of the endpoint
    endpoint TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    user_id TEXT,
    topics TEXT[] NOT NULL,
    created_at BIGINT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    failing_since BIGINT,
    last_error TEXT
);
CREATE INDEX subscriptions_by_user ON subscriptions (user_id, id) WHERE user_id IS NOT NULL;

CREATE TABLE subscription_topics (
    topic TEXT NOT NULL,
    subscription BYTEA NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    PRIMARY KEY (topic, subscription)
);
CREATE INDEX subscription_topics_by_subscription ON subscription_topics (subscription);

-- Counters, each in shards: concurrent writers add to different rows instead of queueing
-- on one; a count is the sum of its shards.
CREATE TABLE counters (
    name TEXT NOT NULL,
    shard SMALLINT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (name, shard)
);

CREATE TABLE sends (
    id BIGSERIAL PRIMARY KEY,
    target_kind TEXT NOT NULL,          -- subscription, user, topic, everyone
    target TEXT,
    payload BYTEA NOT NULL,
    ttl INTEGER NOT NULL,
    urgency TEXT,
    topic TEXT,
    created_at BIGINT NOT NULL,
    send_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    started_at BIGINT,
    materialized BOOLEAN NOT NULL DEFAULT FALSE,
    cursor BYTEA,                       -- the last recipient written as an item
    queued BIGINT NOT NULL DEFAULT 0,
    accepted BIGINT NOT NULL DEFAULT 0,
    gone BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    errors JSONB NOT NULL DEFAULT '[]',
    finished_at BIGINT,
    deleted_failing BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    idempotency_expires BIGINT
);
CREATE INDEX sends_due ON sends (id) WHERE status <> 'done';
CREATE INDEX sends_idempotency_expiry ON sends (idempotency_expires) WHERE idempotency_key IS NOT NULL;

-- A send's recipients without an outcome yet; claimed ones have an owner and a lease.
CREATE TABLE send_items (
    send_id BIGINT NOT NULL REFERENCES sends (id) ON DELETE CASCADE,
    subscription BYTEA NOT NULL,
    owner BYTEA,
    lease_until BIGINT,
    PRIMARY KEY (send_id, subscription)
);
CREATE INDEX send_items_by_owner ON send_items (owner) WHERE owner IS NOT NULL;
CREATE INDEX send_items_by_lease ON send_items (lease_until) WHERE owner IS NOT NULL;

CREATE TABLE used_tokens (
    jti TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);
CREATE INDEX used_tokens_by_expiry ON used_tokens (expires);

CREATE TABLE admin_sessions (
    key BYTEA PRIMARY KEY,
    expires BIGINT NOT NULL,
    secret TEXT NOT NULL
);

-- The keys every hub process of the deployment shares (VAPID, session and user-token
-- secrets, the admin secret), made by the first one.
CREATE TABLE hub_keys (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE api_keys (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used BIGINT
);
