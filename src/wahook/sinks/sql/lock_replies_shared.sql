-- A writer of replies and a sender recording the message replied to take the same
-- advisory lock (shared here, exclusive in record_outbound), so the reply's campaign link
-- never falls between two concurrent transactions. Keys arrive sorted; unnest keeps order.
SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest($1::bigint[]) AS k
