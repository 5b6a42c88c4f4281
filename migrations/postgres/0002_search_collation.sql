-- Byte-order ("C") collation on the text columns searched by prefix ranges,
-- so that `value >= $x AND value < $x_end` uses the b-tree index and matches
-- SQLite's BINARY comparison.
ALTER TABLE idx_string ALTER COLUMN value_norm TYPE TEXT COLLATE "C";
ALTER TABLE idx_token ALTER COLUMN text_norm TYPE TEXT COLLATE "C";
ALTER TABLE idx_token ALTER COLUMN code TYPE TEXT COLLATE "C";
ALTER TABLE idx_uri ALTER COLUMN value TYPE TEXT COLLATE "C";
ALTER TABLE resources ALTER COLUMN res_id TYPE TEXT COLLATE "C";
