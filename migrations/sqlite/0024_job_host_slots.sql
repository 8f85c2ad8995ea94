-- The places on an outside host (`kind:host`) that jobs acting on it may
-- hold at once: a claim takes a free place (one whose job no longer holds
-- a live lease) instead of counting the host's running jobs under a lock
-- for the host. On PostgreSQL concurrent claims skip the places another
-- claim is taking (`FOR UPDATE SKIP LOCKED`) rather than queue behind one
-- host-wide lock: with that lock, every claim on one Redis server waited
-- for the group commit that held it (38 ms a claim in a 1,000-item
-- campaign). Rows are created on a host's first claim, `cap` of them.
CREATE TABLE job_host_slots (
    host TEXT NOT NULL,
    n BIGINT NOT NULL,
    job_id TEXT,
    PRIMARY KEY (host, n)
);
