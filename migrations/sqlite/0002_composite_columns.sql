-- Composite search values with a typed second component: the first
-- component's key, and the second's key (token/string/reference) or range
-- (quantity value, or date in ms).
ALTER TABLE idx_composite ADD COLUMN first_key TEXT;
ALTER TABLE idx_composite ADD COLUMN second_key TEXT;
ALTER TABLE idx_composite ADD COLUMN second_low REAL;
ALTER TABLE idx_composite ADD COLUMN second_high REAL;
CREATE INDEX idx_composite_first ON idx_composite (res_type, param, first_key);
