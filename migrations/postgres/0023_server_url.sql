-- Where the last server that started is reached (its `public_url`, or
-- the address it bound): a CLI command without a `public_url` of its own
-- hands out links to that server (`connection authorize`), not to the
-- default `http://127.0.0.1:8080` a server started with `--listen` does
-- not answer on. One row.
CREATE TABLE server_url (
    id BIGINT PRIMARY KEY,
    public_url TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
