-- Incident campaigns (src/incident/): a plan of items over a scope, run by
-- a job of kind `incident` (src/jobs/queue.rs), each item tracked from
-- `pending` to `verified` (or `failed`, or `waiting_person`).
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    -- 'all' or 'org:SLUG'
    scope TEXT NOT NULL,
    -- NULL for 'all'
    org_id TEXT REFERENCES orgs(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    -- JSON array of connector kinds the campaign is limited to ([] = all)
    kinds TEXT NOT NULL,
    include_own BOOLEAN NOT NULL,
    overlap_ms BIGINT NOT NULL,
    -- running | completed | cancelled
    status TEXT NOT NULL,
    job_id TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX incidents_open ON incidents (finished_at, started_at);

CREATE TABLE incident_items (
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    n BIGINT NOT NULL,
    org_id TEXT,
    -- connection | provider_client | app_tokens | app | m2m | key
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT NOT NULL,
    -- the connector kind, for connections and provider clients
    kind TEXT,
    -- rotate | reauthorize | runbook | operator | revoke | regenerate
    action TEXT NOT NULL,
    -- the provider host items are throttled by
    host TEXT,
    -- pending | acting | done | verified | failed | waiting_person
    status TEXT NOT NULL,
    -- operator | org_admins (while waiting_person)
    waiting_on TEXT,
    detail TEXT,
    -- an item that must be done first (the provider client of a kind)
    after_n BIGINT,
    rotation_id TEXT,
    done_by TEXT,
    done_at BIGINT,
    verified_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (incident_id, n)
);
CREATE INDEX incident_items_status ON incident_items (incident_id, status);

-- Why an application's tokens were cut off (an incident names itself).
ALTER TABLE oauth_clients ADD COLUMN revoked_reason TEXT;

-- One row: starting a campaign takes it first, so two starts over
-- overlapping scopes cannot both pass the overlap check.
CREATE TABLE incident_gate (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO incident_gate (id, n) VALUES (1, 0);
