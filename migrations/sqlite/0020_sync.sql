-- Deliveries: a connection that receives the org's outbox keeps a cursor
-- into it (`cursor_seq`, the last sequence delivered). State, last error
-- and the pause it is in are here; the work itself is a standing job on
-- the one jobs primitive (`delivery:<id>`), so instances share it by lease.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    connection_id TEXT NOT NULL UNIQUE REFERENCES connections(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    filter_domains TEXT NOT NULL DEFAULT '[]',
    batch BIGINT NOT NULL,
    cursor_seq BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    last_delivered_at BIGINT,
    last_error TEXT,
    last_error_at BIGINT,
    -- A batch a receiver refused with a 4xx other than 401/429: parked
    -- (first and last sequence), shown, retried by a person; never dropped.
    parked_from BIGINT,
    parked_to BIGINT,
    -- Passing failures in a row (the retry's backoff grows with them).
    failures BIGINT NOT NULL DEFAULT 0,
    -- When the current pause began, and how many records had been
    -- delivered then: the catch-up after it is measured from these.
    paused_at BIGINT,
    paused_delivered BIGINT,
    resumed_at BIGINT,
    -- The last catch-up after a pause: records sent and time paused.
    caught_up_records BIGINT,
    caught_up_paused_ms BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX deliveries_org ON deliveries (org_id);

-- Compaction keeps the latest state of each record: it looks up a
-- record's later versions by email.
CREATE INDEX outbox_email ON outbox (org_id, email, seq);

-- A backfill replays (from_seq, to_seq] of the outbox to one delivery,
-- from a cursor of its own, as a job (`backfill:<id>`): resumable after a
-- crash, shared by instances by lease. `to_seq` is the delivery's cursor
-- when the backfill started, so live delivery (which waits while a
-- backfill runs) and the backfill never cover one sequence twice.
CREATE TABLE backfills (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq BIGINT NOT NULL,
    cursor_seq BIGINT NOT NULL,
    total BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    last_error TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX backfills_delivery ON backfills (delivery_id, started_at);

-- What a rekey People API applied from each source (another rekey's org
-- delivering to it): the highest sequence per email. A retried or replayed
-- record at or below it changes nothing, so a batch sent twice never
-- writes twice and an older state never overwrites a newer one.
CREATE TABLE people_sources (
    org_id TEXT NOT NULL,
    source TEXT NOT NULL,
    email TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (org_id, source, email)
);
