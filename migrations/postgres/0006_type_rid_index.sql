-- Rows of one type in row-id order: lets a default-ordered page walk
-- candidates in order and stop once the page is full.
CREATE INDEX resources_type_rid ON resources (res_type, rid);
