-- The invalidation epoch (src/store/epoch.rs): one counter of the changes
-- that can make a cached token, key or client validation wrong, bumped by
-- triggers so that no code path can forget. Inserts never invalidate (only
-- rows that exist are cached); deleting expired access tokens (the janitor)
-- does not either, so that table has no delete trigger.

--
-- SQLite: the triggers bump the counter in place (one writer at a time, so
-- it cannot deadlock); the writing connection's update hook sees the bump,
-- and the committing transaction then waits for every instance to see the
-- new value before it answers.

CREATE TABLE cache_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO cache_epoch (id, value) VALUES (1, 0);

CREATE TRIGGER oauth_access_tokens_invalidate_update AFTER UPDATE OF revoked_at, expires_at ON oauth_access_tokens
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER oauth_grants_invalidate_update AFTER UPDATE OF revoked_at ON oauth_grants
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER oauth_grants_invalidate_delete AFTER DELETE ON oauth_grants
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER oauth_clients_invalidate_update AFTER UPDATE ON oauth_clients
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER oauth_clients_invalidate_delete AFTER DELETE ON oauth_clients
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER access_keys_invalidate_update AFTER UPDATE OF org_id, name, scope, digest, prev_digest, prev_expires_at, expires_at, revoked_at ON access_keys
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER access_keys_invalidate_delete AFTER DELETE ON access_keys
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER users_invalidate_update AFTER UPDATE OF org_id, email, permission, active, revoked_before ON users
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER users_invalidate_delete AFTER DELETE ON users
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER orgs_invalidate_update AFTER UPDATE OF slug, revoked_before ON orgs
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER orgs_invalidate_delete AFTER DELETE ON orgs
BEGIN
    UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
END;
