-- Every status rewrites its messages row and the campaign_audience row mirroring it. Free
-- room in each page lets PostgreSQL update in place (HOT: no index entries to add, since
-- no indexed column changes), which is most of the cost of a status.
ALTER TABLE messages SET (fillfactor = 70);
ALTER TABLE campaign_audience SET (fillfactor = 70);
