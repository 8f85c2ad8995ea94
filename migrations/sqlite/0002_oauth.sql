-- OAuth 2.0 authorization server: clients (applications and, later,
-- machine-to-machine clients), codes, grants (authorizations), tokens.
-- Secrets and tokens are stored only as keyed digests.

CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,                 -- 'app' or 'm2m'
    name TEXT NOT NULL,
    client_id TEXT NOT NULL UNIQUE,
    secret_digest TEXT NOT NULL,
    -- the previous secret, accepted until prev_secret_expires_at (regenerate --overlap)
    prev_secret_digest TEXT,
    prev_secret_expires_at BIGINT,
    scope TEXT NOT NULL,
    callbacks TEXT NOT NULL,            -- JSON array of exact redirect URIs
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,  -- m2m: acts capped by this user
    access_ttl_ms BIGINT NOT NULL,
    refresh_ttl_ms BIGINT NOT NULL,
    refresh_grace_ms BIGINT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- bulk revocation: tokens of this client issued before this are invalid
    revoked_before BIGINT,
    UNIQUE (org_id, kind, name)
);

CREATE TABLE oauth_codes (
    digest TEXT PRIMARY KEY,
    client_pk TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    code_challenge TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    grant_id TEXT
);

-- An authorization: one user's consent to one application, and the chain
-- of refresh tokens that keeps it alive.
CREATE TABLE oauth_grants (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    client_pk TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    code_digest TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX oauth_grants_client ON oauth_grants (client_pk, created_at);
CREATE INDEX oauth_grants_code ON oauth_grants (code_digest);

CREATE TABLE oauth_refresh_tokens (
    digest TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- consumed by compare-and-set; the successor's digest and who used it
    used_at BIGINT,
    used_ip TEXT,
    successor_digest TEXT
);
CREATE INDEX oauth_refresh_grant ON oauth_refresh_tokens (grant_id, issued_at);

CREATE TABLE oauth_access_tokens (
    digest TEXT PRIMARY KEY,
    client_pk TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    grant_id TEXT REFERENCES oauth_grants(id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    user_id TEXT,
    scope TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX oauth_access_grant ON oauth_access_tokens (grant_id);
CREATE INDEX oauth_access_expiry ON oauth_access_tokens (expires_at);
