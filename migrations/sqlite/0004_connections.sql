-- Outbound connections. Settings (plain) and credentials (sealed, in
-- `sealed` under ('connections', 'credentials', id)) are stored apart, so
-- re-authorizing replaces only the credentials.

-- The OAuth client rekey presents to a provider, per kind (the secret is
-- sealed under ('connector_clients', 'client_secret', kind)).
CREATE TABLE connector_clients (
    kind TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    auth TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    status_changed_at BIGINT NOT NULL,
    settings TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    -- per-connection OAuth client override (secret sealed under ('connections', 'client_secret', id))
    client_id TEXT,
    has_credentials BOOLEAN NOT NULL,
    access_expires_at BIGINT,
    refresh_due_at BIGINT,
    failures BIGINT NOT NULL,
    next_attempt_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    last_test_at BIGINT,
    last_test_ok BOOLEAN,
    last_test_message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX connections_due ON connections (refresh_due_at);

-- Pending OAuth authorizations: the state parameter (as a digest), single use.
CREATE TABLE connection_states (
    digest TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    started_by TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Platform service keys: what platform code presents to read credentials.
CREATE TABLE service_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    digest TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
