-- A scheduled rotation that fell due and cannot start by itself (a person
-- rotates the kind, the connection needs re-authorizing, an earlier
-- rotation failed and waits for a person): why (`rotation_waiting`) and
-- since when the scheduler has known (`rotation_waiting_at`). Written once
-- per due period, so the warning is given once, not on every pass, and
-- shown with the connection and in `credentials age`.
ALTER TABLE connections ADD COLUMN rotation_waiting TEXT;
ALTER TABLE connections ADD COLUMN rotation_waiting_at BIGINT;
