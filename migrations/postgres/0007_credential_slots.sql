-- A connection's credential in versions (src/connectors/slots.rs). Values
-- are sealed in `sealed` under ('connections', 'credentials' |
-- 'credentials_pending' | 'credentials_previous', connection id); this
-- table holds each slot's version and times only.
CREATE TABLE credential_slots (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    -- current | pending | previous
    slot TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    verified_at BIGINT,
    last_read_at BIGINT,
    retired_at BIGINT,
    PRIMARY KEY (connection_id, slot)
);

-- Credentials stored before slots existed are version 1 of `current`.
INSERT INTO credential_slots (connection_id, slot, version, created_at, verified_at)
SELECT id, 'current', 1, updated_at, CASE WHEN last_test_ok THEN last_test_at END
  FROM connections WHERE has_credentials;
