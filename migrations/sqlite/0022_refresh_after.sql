-- Readers are consumers, not service keys (issue 23, item 7).
--
-- How long a connection's credential may be cached by whoever reads it:
-- every credentials read answers it (`refresh_after_s`); NULL means the
-- default (`rotation::limits::REFRESH_AFTER_MS`).
ALTER TABLE connections ADD COLUMN refresh_after_ms BIGINT;

-- A reader is a service key and, when it names itself (`X-Rekey-Consumer`),
-- the consumer behind it: two consumers behind one key are two readers.
-- '' is a key read without a name (a key that reads for one consumer).
CREATE TABLE credential_reads_new (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    reader TEXT NOT NULL,
    consumer TEXT NOT NULL DEFAULT '',
    ip TEXT,
    version BIGINT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, reader, consumer)
);
INSERT INTO credential_reads_new (connection_id, reader, consumer, ip, version, read_at)
    SELECT connection_id, reader, '', ip, version, read_at FROM credential_reads;
DROP TABLE credential_reads;
ALTER TABLE credential_reads_new RENAME TO credential_reads;

-- Until when each reader may use each version it was handed (its read
-- plus the `refresh_after` it was told): a cut-over never retires a
-- version before every such time has passed, so a consumer that caches
-- as told never holds a credential that no longer works. Kept per version,
-- because a later read of the new version by a sibling behind the same
-- key says nothing about the copy this one cached.
CREATE TABLE credential_holds (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    reader TEXT NOT NULL,
    consumer TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL,
    until_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, reader, consumer, version)
);

-- What a rotation did about sessions the target keeps working after the
-- old secret is removed (Redis): `{"kept": N}` or `{"ended": N}`.
ALTER TABLE rotations ADD COLUMN sessions TEXT;
