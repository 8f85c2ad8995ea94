-- Age and schedule of rekey's own secrets (access keys, machine-client and
-- application secrets): when the secret in force was set by a reset or
-- regeneration (`rotated_at`; NULL: since the target was created), and the
-- interval after which it is due (`rotation_interval_ms`; NULL: never).
-- Kept apart from the targets' tables: one shape for the three kinds.
CREATE TABLE secret_schedules (
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    rotation_interval_ms BIGINT,
    rotated_at BIGINT,
    PRIMARY KEY (target_type, target_id)
);
