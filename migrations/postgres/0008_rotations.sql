-- Rotations (src/rotation/): one row per rotation, driven by a job of kind
-- `rotation` (src/jobs/queue.rs) whose step is the rotation's state.
CREATE TABLE rotations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    -- connection | key | m2m | app
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT NOT NULL,
    -- planned | running | waiting_cutover | waiting_person | completed |
    -- failed | stalled | cancelled
    status TEXT NOT NULL,
    reason TEXT,
    -- JSON array of {name, status, at, detail}
    steps TEXT NOT NULL,
    job_id TEXT NOT NULL,
    cutover_window_ms BIGINT NOT NULL,
    deadline_at BIGINT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX rotations_org ON rotations (org_id, started_at);
CREATE INDEX rotations_target ON rotations (target_type, target_id, status);
-- One rotation per target at a time, whatever the instances do at once.
CREATE UNIQUE INDEX rotations_one_active ON rotations (target_type, target_id) WHERE finished_at IS NULL;
