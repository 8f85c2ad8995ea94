-- Audit events committed on PostgreSQL and not yet chained onto the log.
-- A transaction stages its events here (no lock) and commits; each
-- instance's chainer then moves them onto the chain (`audit_events`)
-- under the head's lock, many at a time. Chained inside every audited
-- transaction, the head's row lock made every audited write wait for the
-- one before to commit, and each waiter held its own locks and its pooled
-- connection meanwhile (1,000 campaign items: 84 s of waits on the head).
-- SQLite has one writer at a time, so there events are chained in their
-- own transaction and this table stays empty.
CREATE TABLE audit_pending (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    org_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    ip TEXT,
    detail TEXT NOT NULL
);
