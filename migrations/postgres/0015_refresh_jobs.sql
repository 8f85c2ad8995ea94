-- The refresh keeper runs on the jobs primitive: one `refresh` job per
-- OAuth connection (id `refresh-<connection id>`), due when the connection
-- is (the later of refresh_due_at and next_attempt_at). Its lease is also
-- the lock an on-demand refresh takes. connections.lease_owner and
-- lease_until are no longer written.
INSERT INTO jobs (id, kind, subject, state, step, payload, attempts, max_attempts, next_run_at, created_at, updated_at)
SELECT 'refresh-' || id, 'refresh', id, 'queued', 'refresh', '{}', 0, 1,
       CASE WHEN next_attempt_at IS NOT NULL AND next_attempt_at > refresh_due_at THEN next_attempt_at ELSE refresh_due_at END,
       updated_at, updated_at
FROM connections
WHERE auth = 'oauth2' AND has_credentials = TRUE AND refresh_due_at IS NOT NULL;
