-- The landing page lists the access keys that expire within a week (or
-- expired in the last one), every org's for the operator: found by this
-- index, not by reading every key (100,000 keys in the console bench).
CREATE INDEX access_keys_expiring ON access_keys (expires_at)
    WHERE revoked_at IS NULL AND expires_at IS NOT NULL;
