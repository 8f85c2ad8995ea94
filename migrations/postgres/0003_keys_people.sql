-- Org access keys, People records and the outbox of their changes.

CREATE TABLE access_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    -- the previous key, accepted until prev_expires_at (reset --overlap)
    prev_digest TEXT,
    prev_expires_at BIGINT,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    UNIQUE (org_id, name)
);
CREATE INDEX access_keys_prev ON access_keys (prev_digest);

CREATE TABLE people (
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    fields TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, email)
);

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id TEXT NOT NULL,
    email TEXT NOT NULL,
    op TEXT NOT NULL,
    record TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX outbox_org ON outbox (org_id, seq);
