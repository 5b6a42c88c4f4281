-- Composite values are stored once per pair of component values instead of
-- once per key variant (system|code × code × no unit): `first_key` and
-- `second_key` keep the most specific key (`system|code`, or the value
-- itself), `first_code` and `second_code` the bare code, which queries
-- without a system match. Rows written before keep every variant; their
-- bare codes are filled in here, so both kinds answer the same queries.
ALTER TABLE idx_composite ADD COLUMN first_code TEXT;
ALTER TABLE idx_composite ADD COLUMN second_code TEXT;
UPDATE idx_composite SET
    first_code = CASE WHEN position('|' IN first_key) > 0
                      THEN substr(first_key, position('|' IN first_key) + 1) ELSE first_key END,
    second_code = CASE WHEN position('|' IN second_key) > 0
                       THEN substr(second_key, position('|' IN second_key) + 1) ELSE second_key END;
-- `components` is no longer read (new rows leave it empty): its index goes.
DROP INDEX idx_composite_lookup;
CREATE INDEX idx_composite_code ON idx_composite (res_type, param, first_code, rid);
