-- Change counters: a write that changes what a cache holds (a Consent, a
-- revoked access token) bumps its topic's counter in the same transaction,
-- so every instance can tell that its cached copy is out of date.
CREATE TABLE change_counters (
    topic TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO change_counters (topic, value) VALUES ('consent', 0), ('revocation', 0);
