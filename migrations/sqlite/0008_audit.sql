-- The audit trail: one row per AuditEvent, in chain order. `hash` is
-- SHA-256 over the previous row's hash and this row (see src/audit/chain.rs);
-- `audit_head` holds the last link so that appends serialise on one row.
-- Rows are never updated or deleted by the server.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    recorded_ms INTEGER NOT NULL,
    type_code   TEXT    NOT NULL,
    subtype     TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    content     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_log_recorded ON audit_log (recorded_ms, seq);
CREATE INDEX audit_log_subtype ON audit_log (subtype, seq);

-- Search keys of each event: kind 'patient' (Patient/id), 'agent' (a
-- reference or identifier of who acted), 'entity' (Type/id of what).
CREATE TABLE audit_ref (
    seq   INTEGER NOT NULL,
    kind  TEXT    NOT NULL,
    value TEXT    NOT NULL,
    PRIMARY KEY (kind, value, seq)
);

CREATE TABLE audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, 'genesis');
