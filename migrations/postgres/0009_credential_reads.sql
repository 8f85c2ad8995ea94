-- Who reads a connection's credentials through the credentials endpoint,
-- and which version each reader last got: a rotation retires the old
-- credential only when every reader has moved to the new one.
CREATE TABLE credential_reads (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    -- service:NAME (the service key that read)
    reader TEXT NOT NULL,
    ip TEXT,
    version BIGINT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, reader)
);
