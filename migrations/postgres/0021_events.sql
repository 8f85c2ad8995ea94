-- Each connection's activity log: authorizations, refreshes, probes,
-- rotations, status changes, deliveries, with the provider's own message
-- where there is one (never a secret). Paged newest first by (at, id).
CREATE TABLE connection_activity (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    at BIGINT NOT NULL
);
CREATE INDEX connection_activity_page ON connection_activity (connection_id, at, id);

-- An org's webhook receivers and the events each subscribes to (a JSON
-- array of names). The signing secret is sealed (`sealed`, place
-- webhooks/signing_secret/<id>), shown once at creation.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX webhooks_org ON webhooks (org_id);

-- One event to one webhook: the exact body sent (signed as stored), its
-- state (`queued`, `retrying`, `delivered`, `dead`) and the last answer.
-- The sending is a job (`webhook`, subject = this id) on the jobs table.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_status BIGINT,
    last_error TEXT,
    job_id TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    next_attempt_at BIGINT
);
CREATE INDEX webhook_deliveries_org ON webhook_deliveries (org_id, created_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);

-- Events that must be raised once per occurrence found by a periodic scan
-- (a credential expiring: once per credential per expiry), remembered by
-- key so the next scan, on any instance, stays quiet.
CREATE TABLE event_marks (
    key TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
