-- Rotation schedules: rotate a connection's credential every
-- `rotation_interval_ms` (NULL: never on its own). `last_rotated_at` is when
-- the credential was last replaced by a rotation or a person (not by an
-- OAuth token refresh).
ALTER TABLE connections ADD COLUMN rotation_interval_ms BIGINT;
ALTER TABLE connections ADD COLUMN last_rotated_at BIGINT;
