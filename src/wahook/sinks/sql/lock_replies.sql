-- The replies' advisory locks (see wahook/sinks/locks.py), until the transaction ends:
-- ($2, $3) pairs in the order to take them, a null key standing for its bucket's lock
-- (shared when $1). unnest keeps the order of its arrays. Buckets use the two-integer
-- form of the lock functions (class 1), keys the bigint form: the two never collide.
SELECT count(CASE WHEN l.k IS NOT NULL THEN pg_advisory_xact_lock(l.k)
                  WHEN $1 THEN pg_advisory_xact_lock_shared(1, l.b)
                  ELSE pg_advisory_xact_lock(1, l.b) END)
FROM unnest($2::int4[], $3::int8[]) AS l(b, k)
