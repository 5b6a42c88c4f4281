-- `_text` and `_content`: folded plain text per resource, searched by
-- substring, so it gets no value index (long keys would bloat a b-tree).
CREATE TABLE idx_fulltext (
    rid      BIGINT  NOT NULL,
    res_type TEXT    NOT NULL,
    param    TEXT    NOT NULL,
    text     TEXT    NOT NULL
);
CREATE INDEX idx_fulltext_rid ON idx_fulltext (rid);
CREATE INDEX idx_fulltext_type ON idx_fulltext (res_type, param);
