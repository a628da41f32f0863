"""The replies' advisory locks: what a row lock cannot guard, since the rows involved may
not exist yet.

The replies to one outbound message are guarded by one lock, taken by every transaction
that stores such a reply (the sink) or records the message replied to
(``record_outbound``), first in the transaction, before any row lock, and held to its
end. So the audience row's first reply is computed by one transaction at a time, each
seeing the replies the others committed (and a reply stored before its message was
recorded gets the campaign).

The server's lock table is shared by all sessions and small (sized for
``max_locks_per_transaction`` × (``max_connections`` + ``max_prepared_transactions``)
locks, 6,400 by default; one transaction failed at 12,000-15,000 here), so a transaction
never takes one lock per message when it has many: a burst of replies (a backlog after a
campaign) or a large ``record_outbound`` would fail with "out of shared memory" and be
retried in vain. Each message falls in one of ``BUCKETS`` buckets. With at most ``FINE``
messages, a transaction takes each bucket it touches shared and each message exclusive;
with more, each bucket it touches exclusive. Either way two transactions sharing a
message exclude each other, and no transaction holds more than ``BUCKETS`` of these
locks. Locks are taken in one order — bucket, then the bucket's messages — so they never
deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from wahook.sinks import rows, sql

if TYPE_CHECKING:
    import asyncpg

BUCKETS = 1024
FINE = 512


def plan(keys: Iterable[int]) -> tuple[list[int], list[int | None], bool]:
    """The locks for ``keys`` in the order to take them, as (bucket, key) columns (key
    None: the bucket's own lock), and whether the bucket locks are shared."""
    distinct = sorted(set(keys), key=lambda k: (k % BUCKETS, k))
    if len(distinct) > FINE:
        buckets = sorted({k % BUCKETS for k in distinct})
        return buckets, [None] * len(buckets), False
    bucket_col: list[int] = []
    key_col: list[int | None] = []
    for k in distinct:  # sorted by bucket: each bucket's lock, then its keys
        bucket = k % BUCKETS
        if not bucket_col or bucket_col[-1] != bucket:
            bucket_col.append(bucket)
            key_col.append(None)
        bucket_col.append(bucket)
        key_col.append(k)
    return bucket_col, key_col, True


async def lock_replies(conn: asyncpg.Connection, messages: Iterable[tuple[int, str]]) -> None:
    """Lock the replies to the outbound ``messages`` ((organization, wamid) pairs) until
    the transaction ends."""
    buckets, keys, shared = plan(rows.reply_lock(org, wamid) for org, wamid in messages)
    if buckets:
        await conn.fetchval(sql.load("lock_replies"), shared, buckets, keys)
