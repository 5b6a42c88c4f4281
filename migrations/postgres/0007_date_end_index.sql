-- Date index by end of range, for `_sort=-date` walked in key order.
CREATE INDEX idx_date_end ON idx_date (res_type, param, high_ms, rid);
