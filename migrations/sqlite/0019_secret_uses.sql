-- Who last used each secret rekey issued (an access key, a client secret),
-- per secret: `secret` names which of the target's secrets (the last 16
-- hex digits of its digest, never the secret), so a rotation's cut-over
-- tells a use of the previous secret from a use of the new one and names
-- who still uses the old one. Written in batches from memory
-- (`oauth::usage`), never per request; no trigger: nothing a validation
-- reads changes here.
CREATE TABLE secret_uses (
    target_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    used_at BIGINT NOT NULL,
    ip TEXT,
    agent TEXT,
    PRIMARY KEY (target_id, secret)
);
