-- A client may introspect only its own tokens unless it is granted
-- introspection (a resource server's machine client).
ALTER TABLE oauth_clients ADD COLUMN may_introspect BOOLEAN NOT NULL DEFAULT FALSE;
