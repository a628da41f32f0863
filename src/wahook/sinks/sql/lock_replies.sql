-- The replies to one outbound message are guarded by one advisory lock, taken by every
-- transaction that stores such a reply (the sink) or records the message replied to
-- (record_outbound), first in the transaction, before any row lock. Exclusive for both:
-- two writers storing replies to the same message must not compute its audience row's
-- first reply each without seeing the other's (shared locks let them; the later commit
-- then kept its own, later reply). Keys arrive sorted; unnest keeps their order.
SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k
