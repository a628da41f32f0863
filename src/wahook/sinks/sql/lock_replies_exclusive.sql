-- See lock_replies_shared.sql. Keys arrive sorted; unnest keeps order.
SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k
