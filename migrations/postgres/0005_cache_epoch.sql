-- The invalidation epoch (src/store/epoch.rs): one counter of the changes
-- that can make a cached token, key or client validation wrong, bumped by
-- triggers so that no code path can forget. Inserts never invalidate (only
-- rows that exist are cached); deleting expired access tokens (the janitor)
-- does not either, so that table has no delete trigger.
--
-- PostgreSQL: a row trigger marks the transaction (a transaction-local
-- setting, no lock taken), and a deferred trigger bumps the counter once per
-- transaction at commit, the last thing the transaction does: it holds no
-- lock that anyone waiting for the counter's row could need, so the counter
-- cannot take part in a deadlock.

CREATE TABLE cache_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO cache_epoch (id, value) VALUES (1, 0);

CREATE FUNCTION rekey_mark_invalidating() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('rekey.invalidates', '1', true);
    RETURN NULL;
END
$$;

CREATE FUNCTION rekey_bump_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('rekey.epoch_bumped', true) IS DISTINCT FROM '1' THEN
        UPDATE cache_epoch SET value = value + 1 WHERE id = 1;
        PERFORM set_config('rekey.epoch_bumped', '1', true);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER oauth_access_tokens_mark AFTER UPDATE OF revoked_at, expires_at ON oauth_access_tokens
    FOR EACH ROW EXECUTE FUNCTION rekey_mark_invalidating();
CREATE CONSTRAINT TRIGGER oauth_access_tokens_bump AFTER UPDATE OF revoked_at, expires_at ON oauth_access_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rekey_bump_epoch();

CREATE TRIGGER oauth_grants_mark AFTER UPDATE OF revoked_at OR DELETE ON oauth_grants
    FOR EACH ROW EXECUTE FUNCTION rekey_mark_invalidating();
CREATE CONSTRAINT TRIGGER oauth_grants_bump AFTER UPDATE OF revoked_at OR DELETE ON oauth_grants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rekey_bump_epoch();

CREATE TRIGGER oauth_clients_mark AFTER UPDATE OR DELETE ON oauth_clients
    FOR EACH ROW EXECUTE FUNCTION rekey_mark_invalidating();
CREATE CONSTRAINT TRIGGER oauth_clients_bump AFTER UPDATE OR DELETE ON oauth_clients
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rekey_bump_epoch();

CREATE TRIGGER access_keys_mark AFTER UPDATE OF org_id, name, scope, digest, prev_digest, prev_expires_at, expires_at, revoked_at OR DELETE ON access_keys
    FOR EACH ROW EXECUTE FUNCTION rekey_mark_invalidating();
CREATE CONSTRAINT TRIGGER access_keys_bump AFTER UPDATE OF org_id, name, scope, digest, prev_digest, prev_expires_at, expires_at, revoked_at OR DELETE ON access_keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rekey_bump_epoch();

CREATE TRIGGER users_mark AFTER UPDATE OF org_id, email, permission, active, revoked_before OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION rekey_mark_invalidating();
CREATE CONSTRAINT TRIGGER users_bump AFTER UPDATE OF org_id, email, permission, active, revoked_before OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rekey_bump_epoch();

CREATE TRIGGER orgs_mark AFTER UPDATE OF slug, revoked_before OR DELETE ON orgs
    FOR EACH ROW EXECUTE FUNCTION rekey_mark_invalidating();
CREATE CONSTRAINT TRIGGER orgs_bump AFTER UPDATE OF slug, revoked_before OR DELETE ON orgs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rekey_bump_epoch();
