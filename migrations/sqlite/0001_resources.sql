-- Resources, their versions and the search-index tables (SQLite).
-- Times are milliseconds since the Unix epoch (UTC); booleans are 0/1.

-- One row per logical resource: the current-version pointer (version joins resource_versions).
CREATE TABLE resources (
    rid          INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (res_type, res_id)
);
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);

-- One row per version, never rewritten. content is NULL for a delete tombstone.
CREATE TABLE resource_versions (
    vid          INTEGER PRIMARY KEY AUTOINCREMENT,
    rid          INTEGER NOT NULL REFERENCES resources (rid),
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method       TEXT    NOT NULL,
    content      TEXT,
    UNIQUE (rid, version)
);
CREATE INDEX resource_versions_type_vid ON resource_versions (res_type, vid);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);

-- Search index, one table per search parameter type. Rows describe the
-- current version of a resource only and are replaced with every write.
CREATE TABLE idx_string (
    rid        INTEGER NOT NULL,
    res_type   TEXT    NOT NULL,
    param      TEXT    NOT NULL,
    value_norm TEXT    NOT NULL,   -- lower case, accents removed
    value      TEXT    NOT NULL    -- as written, for :exact
);
CREATE INDEX idx_string_lookup ON idx_string (res_type, param, value_norm);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_token (
    rid       INTEGER NOT NULL,
    res_type  TEXT    NOT NULL,
    param     TEXT    NOT NULL,
    system    TEXT,
    code      TEXT,
    text_norm TEXT                 -- display / text, for :text
);
CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_reference (
    rid         INTEGER NOT NULL,
    res_type    TEXT    NOT NULL,
    param       TEXT    NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    target_url  TEXT               -- absolute or canonical references
);
CREATE INDEX idx_reference_lookup ON idx_reference (res_type, param, target_id, target_type);
CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_date (
    rid      INTEGER NOT NULL,
    res_type TEXT    NOT NULL,
    param    TEXT    NOT NULL,
    low_ms   INTEGER NOT NULL,     -- inclusive start of the value's range
    high_ms  INTEGER NOT NULL      -- inclusive end of the value's range
);
CREATE INDEX idx_date_lookup ON idx_date (res_type, param, low_ms, high_ms);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_number (
    rid      INTEGER NOT NULL,
    res_type TEXT    NOT NULL,
    param    TEXT    NOT NULL,
    low      REAL    NOT NULL,     -- value minus half its precision
    high     REAL    NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (res_type, param, low, high);
CREATE INDEX idx_number_rid ON idx_number (rid);

CREATE TABLE idx_quantity (
    rid      INTEGER NOT NULL,
    res_type TEXT    NOT NULL,
    param    TEXT    NOT NULL,
    system   TEXT,
    code     TEXT,
    low      REAL    NOT NULL,
    high     REAL    NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (res_type, param, code, low, high);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);

CREATE TABLE idx_uri (
    rid      INTEGER NOT NULL,
    res_type TEXT    NOT NULL,
    param    TEXT    NOT NULL,
    value    TEXT    NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid);

CREATE TABLE idx_composite (
    rid        INTEGER NOT NULL,
    res_type   TEXT    NOT NULL,
    param      TEXT    NOT NULL,
    components TEXT    NOT NULL    -- normalised component values joined by '$'
);
CREATE INDEX idx_composite_lookup ON idx_composite (res_type, param, components);
CREATE INDEX idx_composite_rid ON idx_composite (rid);
