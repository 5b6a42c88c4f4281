-- Lookup indexes that also carry rid, so a search sub-query
-- (SELECT rid FROM idx_… WHERE res_type = … AND param = … AND value …)
-- is answered from the index alone.
DROP INDEX idx_string_lookup;
CREATE INDEX idx_string_lookup ON idx_string (res_type, param, value_norm, rid);
DROP INDEX idx_token_lookup;
CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system, rid);
DROP INDEX idx_reference_lookup;
CREATE INDEX idx_reference_lookup ON idx_reference (res_type, param, target_id, target_type, rid);
DROP INDEX idx_date_lookup;
CREATE INDEX idx_date_lookup ON idx_date (res_type, param, low_ms, high_ms, rid);
DROP INDEX idx_number_lookup;
CREATE INDEX idx_number_lookup ON idx_number (res_type, param, low, high, rid);
DROP INDEX idx_quantity_lookup;
CREATE INDEX idx_quantity_lookup ON idx_quantity (res_type, param, code, low, high, rid);
DROP INDEX idx_uri_lookup;
CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, value, rid);
DROP INDEX idx_composite_first;
CREATE INDEX idx_composite_first ON idx_composite (res_type, param, first_key, rid);
