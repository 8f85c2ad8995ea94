-- A test's outcome is `ok` only when a request or login with the credential
-- succeeded; `unverified` where none is possible; `failed`. (last_test_ok
-- stays: true only for `ok`.)
ALTER TABLE connections ADD COLUMN last_test_outcome TEXT;
UPDATE connections SET last_test_outcome = CASE WHEN last_test_ok THEN 'ok' ELSE 'failed' END
 WHERE last_test_at IS NOT NULL;

-- The one leased-job primitive (src/jobs/queue.rs). A job is claimed by
-- taking its lease; a claimer that dies loses it when `lease_until` passes
-- and another instance takes the job over at the step it had reached.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    -- what the job acts on (a rotation id, a connection id, …)
    subject TEXT NOT NULL,
    -- queued | running | done | dead (retry budget used up: a person must
    -- clear it) | cancelled
    state TEXT NOT NULL,
    step TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    next_run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (kind, state, next_run_at);
CREATE INDEX jobs_subject ON jobs (kind, subject);
