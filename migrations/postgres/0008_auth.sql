-- Authorization server state, shared by every instance: registered clients,
-- pending authorizations, codes, launch contexts, refresh tokens, assertion
-- ids seen (replay), revoked access tokens. Secrets are stored as SHA-256.
CREATE TABLE auth_state (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    family TEXT,
    state BIGINT NOT NULL DEFAULT 0,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX auth_state_family ON auth_state (family) WHERE family IS NOT NULL;
CREATE INDEX auth_state_expiry ON auth_state (expires_ms);
