"""The store's defining properties, on random inputs against a real PostgreSQL:

- any permutation of the events and any split into batches gives the same rows as the
  in-memory reference model fed in document order (so every order gives the same rows);
- writing everything again changes nothing;
- concurrent writers with overlapping batches never deadlock and converge.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wahook.sinks.base import Record
from wahook.sinks.locks import BUCKETS, FINE
from wahook.sinks.postgres import (
    Item,
    Outbound,
    PostgresSink,
    TenantRouter,
    add_organization,
    apply_items,
    record_outbound,
)
from wahook.sinks.rows import content_key
from wahook.testing import (
    CUSTOMER,
    PHONE_NUMBER_ID,
    WABA_ID,
    MemorySink,
    dump_tables,
    notification,
    record,
    status,
    text_message,
)

OUT = ["wamid.out1", "wamid.out2", "wamid.out3"]
IN = ["wamid.in1", "wamid.in2", "wamid.in3"]
PRICING = [
    {"billable": True, "pricing_model": "PMP", "category": "marketing"},
    {"billable": False, "pricing_model": "PMP", "type": "free_entry_point", "category": "service"},
]
CONVERSATION = [{"id": "conv-a", "origin": {"type": "marketing"}}, {"id": "conv-b"}]
ERRORS = [[{"code": 131026, "title": "undeliverable"}], [{"code": 131047, "title": "window"}]]


# Recipients and senders: "" (a user known by user id only) counts as absent.
PHONES = [CUSTOMER, "16505550000", ""]
USER_IDS = [None, "US.1", "US.2", ""]


@st.composite
def status_bodies(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(["sent", "delivered", "read", "played", "failed", "deleted"]))
    extra: dict[str, Any] = {}
    if (uid := draw(st.sampled_from(USER_IDS))) is not None:
        extra["recipient_user_id"] = uid
    if draw(st.booleans()):
        extra["pricing"] = draw(st.sampled_from(PRICING))
    if draw(st.booleans()):
        extra["conversation"] = draw(st.sampled_from(CONVERSATION))
    if name == "failed":
        extra["errors"] = draw(st.sampled_from(ERRORS))
    # Statuses of IN[0] too: one wamid both a status id and an incoming message id.
    item = status(
        draw(st.sampled_from([*OUT, IN[0]])),
        name,
        draw(st.sampled_from([100, 200, 300, None])),
        recipient=draw(st.sampled_from(PHONES)),
        **extra,
    )
    pnid = draw(st.sampled_from([PHONE_NUMBER_ID, PHONE_NUMBER_ID, PHONE_NUMBER_ID, "999"]))
    return notification(statuses=[item], phone_number_id=pnid)


@st.composite
def message_bodies(draw: st.DrawFn) -> bytes:
    extra: dict[str, Any] = {}
    if (uid := draw(st.sampled_from(USER_IDS))) is not None:
        extra["from_user_id"] = uid
    item = text_message(
        draw(st.sampled_from(IN)),
        draw(st.sampled_from(["yes", "no", "stop\x00"])),
        draw(st.sampled_from([400, 500, None])),
        sender=draw(st.sampled_from(PHONES)),
        reply_to=draw(st.sampled_from([None, *OUT])),
        **extra,
    )
    return notification(messages=[item])


# Numbers in a key nobody reads: jsonb cannot hold the first three, holds the others.
NUMBERS = ["1.0e131073", "1e-16384", "9" * 131_073, "1e-16383", "0e999999", "-0.5e-16382"]
_MARK = "@NUMBER@"


@st.composite
def number_bodies(draw: st.DrawFn) -> bytes:
    """A status or message carrying an extreme number beside a plain status; one holdable
    and one unholdable item often share a dedup key (and a batch)."""
    literal = draw(st.sampled_from(NUMBERS))
    wamid = draw(st.sampled_from(["wamid.huge1", "wamid.huge2"]))
    if draw(st.booleans()):
        item = status(wamid, draw(st.sampled_from(["sent", "read"])), 100, x=_MARK)
        items = {"statuses": [status("wamid.out1", "sent", 100), item]}
    else:
        items = {"messages": [text_message(wamid, "big", 400, x=_MARK)]}
        items["statuses"] = [status("wamid.out2", "delivered", 200)]
    body = notification(**items).decode("ascii")
    return body.replace(f'"{_MARK}"', literal).encode("ascii")


@st.composite
def other_bodies(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        value = {
            "event": draw(st.sampled_from(["APPROVED", "REJECTED"])),
            "message_template_id": 123456789012345678901234567890,
            "message_template_name": "promo",
            "message_template_language": "en",
        }
        return notification(value=value, field="message_template_status_update")
    bad = {"id": draw(st.sampled_from(OUT)), "status": draw(st.sampled_from([1, 2]))}
    return notification(statuses=[bad, status("wamid.out1", "sent", 100)])


bodies = st.one_of(
    status_bodies(), status_bodies(), message_bodies(), other_bodies(), number_bodies()
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Any], list[Any], list[int]]:
    """(operations in document order, the same permuted, batch sizes)."""
    distinct = draw(st.lists(bodies, min_size=1, max_size=14))
    ops: list[Any] = []
    for i in range(draw(st.integers(len(distinct), len(distinct) + 6))):
        body = distinct[i] if i < len(distinct) else draw(st.sampled_from(distinct))
        # Redeliveries: the same body under another source id and receipt time.
        source = draw(st.sampled_from(["sqs-1", "sqs-2", "sqs-3"]))
        received = draw(st.sampled_from([1750000000.0, 1750000001.5]))
        ops.append(record(body, id=f"{source}-{i}", received_at=received))
    for n, wamid in enumerate(OUT):
        if draw(st.booleans()):
            ops.append(Outbound(1, wamid, f"1650555000{n}", campaign_id=1, content=f"c{n}"))
    permuted = draw(st.permutations(ops))
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=len(ops)))
    return ops, list(permuted), sizes


async def _seed(pool: asyncpg.Pool) -> None:
    org = await add_organization(
        pool, name="acme", phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID
    )
    camp = await pool.fetchval(
        "INSERT INTO campaigns (organization_id, name) VALUES ($1, 'c') RETURNING id", org
    )
    assert (org, camp) == (1, 1)


async def _run(sink: PostgresSink, pool: asyncpg.Pool, ops: list[Any], sizes: list[int]) -> None:
    """Apply ``ops`` in order: records in batches of the given sizes (cycled)."""
    pending: list[Record] = []
    k = 0

    async def flush() -> None:
        if pending:
            result = await sink.write(list(pending))
            assert result.failed == {}
            pending.clear()

    for op in ops:
        if isinstance(op, Outbound):
            await flush()
            await record_outbound(pool, op)
            continue
        pending.append(op)
        if len(pending) >= sizes[k % len(sizes)]:
            k += 1
            await flush()
    await flush()


async def _model(ops: list[Any], *, other_phone: str | None = None) -> MemorySink:
    """The reference model fed ``ops`` in order; ``other_phone``: organization 2's phone."""
    memory = MemorySink()
    memory.add_organization(1, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID)
    if other_phone is not None:
        memory.add_organization(2, phone_number_id=other_phone)
    memory.add_campaign(1, 1)
    for op in ops:
        if isinstance(op, Outbound):
            await memory.record_outbound(op)
        else:
            await memory.write([op])
    return memory


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_any_order_and_batching_gives_the_same_rows(
    fresh_db: Callable[[], AbstractAsyncContextManager[str]],
    scenario: tuple[list[Any], list[Any], list[int]],
) -> None:
    ops, permuted, sizes = scenario
    want = (await _model(ops)).dump()
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await _seed(pool)
        sink = PostgresSink(pool)
        await _run(sink, pool, permuted, sizes)
        got = await dump_tables(pool)
        assert got == want
        # Replaying everything (here in one batch) changes nothing.
        await _run(sink, pool, permuted, [len(permuted)])
        assert await dump_tables(pool) == got


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_quarantine_then_replay_equals_configured_from_the_start(
    fresh_db: Callable[[], AbstractAsyncContextManager[str]],
    scenario: tuple[list[Any], list[Any], list[int]],
) -> None:
    _, permuted, sizes = scenario
    records = [op for op in permuted if isinstance(op, Record)]
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        sink = PostgresSink(pool)
        await _run(sink, pool, records, sizes)  # no organization yet: all quarantined
        assert await pool.fetchval("SELECT count(*) FROM messages") == 0
        await _seed(pool)
        await sink.replay_quarantine()
        await sink.replay_quarantine()
        got = await dump_tables(pool)
    want = (await _model(records)).dump()
    for table in ("messages", "incoming_messages", "campaign_audience", "webhook_events"):
        assert got[table] == want[table]
    # What is still quarantined: problems, and the unknown tenant "999".
    open_rows = [q for q in got["quarantine"] if not q["resolved"]]
    assert all(q["kind"] == "problem" or q["phone_number_id"] == "999" for q in open_rows)


@pytest.mark.slow
async def test_four_concurrent_writers_never_deadlock_and_converge(
    pool: asyncpg.Pool,
) -> None:
    await _seed(pool)
    rng = random.Random(7)
    wamids = [f"wamid.c{i}" for i in range(60)]
    records = []
    for i in range(600):
        w = rng.choice(wamids)
        if rng.random() < 0.8:
            name = rng.choice(["sent", "delivered", "read", "failed"])
            body = notification(statuses=[status(w, name, rng.randint(1, 50))])
        else:
            body = notification(messages=[text_message(f"wamid.r{i % 90}", "ok", reply_to=w)])
        records.append(record(body, id=f"m{i}", received_at=1750000000.0))
    outbound = [Outbound(1, w, f"31600{i:05d}", campaign_id=1) for i, w in enumerate(wamids)]
    await record_outbound(pool, outbound[:30])

    async def writer(seed: int) -> None:
        # retries=0: a deadlock or serialization failure would surface as a failed record.
        # The one failure allowed: another writer replaced an inbound wamid of the batch,
        # replying to another message, while the batch took its locks (replies here reuse
        # 90 wamids with random contexts); the final pass writes those records.
        sink = PostgresSink(pool, retries=0)
        mine = random.Random(seed).sample(records, k=450)
        for i in range(0, len(mine), 40):
            result = await sink.write(mine[i : i + 40])
            assert all("RepliesMoved" in why for why in result.failed.values()), result.failed

    # Senders record the other half one by one, while replies to them are being written.
    senders = [record_outbound(pool, o) for o in outbound[30:]]
    await asyncio.gather(*(writer(s) for s in range(4)), *senders)
    # Whatever the writers missed, in one more pass.
    missing = await PostgresSink(pool).write(records)
    assert missing.failed == {}
    got = await dump_tables(pool)
    ops: list[Any] = [*outbound, *records]
    want = (await _model(ops)).dump()
    for table in want:
        diff = [(a, b) for a, b in zip(got[table], want[table], strict=False) if a != b]
        assert not diff, "\n".join(f"{table}\n{a}\n{b}" for a, b in diff[:2])
    assert got == want


async def test_crossed_statuses_and_replies_never_deadlock(pool: asyncpg.Pool) -> None:
    """Writer A has statuses for the first half of the campaign messages and replies to
    the second half; writer B the other way round. Each touches the audience rows of both
    halves (status mirror, reply), so if a transaction locked them in two passes the two
    would wait for each other; with one pass in id order they never do."""
    await _seed(pool)
    wamids = [f"wamid.x{i:02d}" for i in range(40)]
    outbound = [Outbound(1, w, f"31600{i:05d}", campaign_id=1) for i, w in enumerate(wamids)]
    await record_outbound(pool, outbound)
    first, second = wamids[:20], wamids[20:]

    def batch(statuses_for: list[str], replies_to: list[str], tag: str, t: int) -> list[Record]:
        bodies = [notification(statuses=[status(w, "delivered", t)]) for w in statuses_for]
        bodies += [
            notification(messages=[text_message(f"wamid.{tag}{t}r{i}", "ok", t, reply_to=w)])
            for i, w in enumerate(replies_to)
        ]
        return [record(b, id=f"{tag}{t}-{i}") for i, b in enumerate(bodies)]

    async def writer(tag: str, statuses_for: list[str], replies_to: list[str]) -> list[Record]:
        sink = PostgresSink(pool, retries=0)  # a deadlock would surface as failed records
        written = []
        for t in range(100, 125):
            part = batch(statuses_for, replies_to, tag, t)
            result = await sink.write(part)
            assert result.failed == {}
            written += part
        return written

    a, b = await asyncio.gather(writer("a", first, second), writer("b", second, first))
    want = (await _model([*outbound, *a, *b])).dump()
    assert (await dump_tables(pool))["campaign_audience"] == want["campaign_audience"]


def _replies(prefix: str, wamid: str, timestamp: int, others: int) -> Record:
    """A record replying to ``wamid``, and to ``others`` messages more (never recorded)."""
    items = [text_message(f"{prefix}.0", "yes", timestamp, reply_to=wamid)]
    items += [
        text_message(f"{prefix}.{n}", "hm", timestamp, reply_to=f"wamid.other{n}")
        for n in range(1, others + 1)
    ]
    return record(notification(messages=items))


# Each writer locks few messages (one lock each) or more than FINE (whole buckets).
@pytest.mark.parametrize(
    ("first_others", "second_others"), [(0, 0), (FINE, 0), (0, FINE), (FINE, FINE)]
)
async def test_concurrent_replies_to_one_message_keep_the_first(
    pool: asyncpg.Pool, first_others: int, second_others: int
) -> None:
    """Two writers each store a reply to the same campaign message, the later reply's
    transaction reaching the audience row while the earlier one's is still open. The
    audience row must name the earlier reply whatever the commit order: the second writer
    waits for the first, then sees its reply."""
    await _seed(pool)
    w = "wamid.asked"
    await record_outbound(pool, Outbound(1, w, "16505550001", campaign_id=1))
    early = _replies("wamid.early", w, 100, first_others)
    late = _replies("wamid.late", w, 200, second_others)
    router = TenantRouter()
    async with pool.acquire() as first:
        tx = first.transaction()
        await tx.start()
        await apply_items(first, [Item(early.id, early.received_at, early.events)], router)
        # The later reply, written and committed meanwhile by another writer.
        second = asyncio.create_task(PostgresSink(pool, retries=0).write([late]))
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
        for _ in range(500):  # until the second writer waits on the first (or is done)
            if second.done() or await pool.fetchval(waiting):
                break
            await asyncio.sleep(0.01)
        await tx.commit()
    assert (await second).failed == {}
    row = await pool.fetchrow("SELECT replied_at, reply_message_id FROM campaign_audience")
    assert row["reply_message_id"] == "wamid.early.0"
    assert row["replied_at"].timestamp() == 100


async def test_a_write_holds_a_bounded_number_of_reply_locks(pool: asyncpg.Pool) -> None:
    """One lock per message replied to (and per bucket) up to FINE messages; beyond, one
    per bucket: never more than BUCKETS, however many replies a batch carries."""
    await _seed(pool)
    router = TenantRouter()
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    for others, most in ((3, 2 * 4), (4 * BUCKETS, BUCKETS)):
        batch = _replies(f"wamid.in{others}", "wamid.asked", 100, others)
        async with pool.acquire() as conn, conn.transaction():
            await apply_items(conn, [Item(batch.id, batch.received_at, batch.events)], router)
            assert 0 < await conn.fetchval(held) <= most


@pytest.mark.slow
async def test_more_replies_than_the_servers_lock_table_holds(pool: asyncpg.Pool) -> None:
    """A burst of replies to more campaign messages than the server has advisory locks for
    (max_locks_per_transaction x connections, shared by all sessions) is recorded and
    written, every audience row marked replied. One lock per message replied to failed
    here with "out of shared memory" (and retrying could not help)."""
    await _seed(pool)
    per_tx = await pool.fetchval("SELECT current_setting('max_locks_per_transaction')::int")
    slots = await pool.fetchval(
        "SELECT current_setting('max_connections')::int"
        " + current_setting('max_prepared_transactions')::int"
    )
    n = 3 * per_tx * slots
    asked = [f"wamid.asked{i}" for i in range(n)]
    await record_outbound(
        pool, [Outbound(1, w, f"1650{i:07d}", campaign_id=1) for i, w in enumerate(asked)]
    )
    burst = record(
        notification(
            messages=[
                text_message(f"wamid.re{i}", "yes", 100, reply_to=w) for i, w in enumerate(asked)
            ]
        )
    )
    result = await PostgresSink(pool, retries=1).write([burst])
    assert result.failed == {}
    assert result.applied == n
    replied = "SELECT count(*) FROM campaign_audience WHERE reply_message_id IS NOT NULL"
    assert await pool.fetchval(replied) == n


async def _versions_of_one_inbound_message(
    pool: asyncpg.Pool,
) -> tuple[list[Outbound], list[Record]]:
    """Three campaign messages and three versions of one inbound wamid, each a reply to
    another of them, greatest content key first (the least is the one stored in the end)."""
    asked = ["wamid.askedA", "wamid.askedB", "wamid.askedC"]
    outbound = [Outbound(1, w, f"1650555000{n}", campaign_id=1) for n, w in enumerate(asked)]
    await record_outbound(pool, outbound)
    versions = sorted(
        (
            record(notification(messages=[text_message("wamid.in", "ok", 100, reply_to=w)]))
            for w in asked
        ),
        key=lambda r: content_key(r.events[0].raw),
        reverse=True,
    )
    return outbound, versions


@pytest.mark.parametrize("stored_first", [True, False])
async def test_concurrent_versions_of_one_inbound_message_forget_every_old_reply(
    pool: asyncpg.Pool, stored_first: bool
) -> None:
    """A writer stores a version of an inbound message (replacing a stored one, or the
    first) in an open transaction; meanwhile a second writer writes a version that wins,
    replying to another message. The second read what the message replied to before the
    first committed: it must notice and start again, or the first version's campaign
    message keeps naming a reply that no longer replies to it."""
    await _seed(pool)
    outbound, (stored, middle, least) = await _versions_of_one_inbound_message(pool)
    written = [stored] if stored_first else []
    if stored_first:
        assert (await PostgresSink(pool).write([stored])).failed == {}
    router = TenantRouter()
    async with pool.acquire() as first:
        tx = first.transaction()
        await tx.start()
        await apply_items(first, [Item(middle.id, middle.received_at, middle.events)], router)
        second = asyncio.create_task(PostgresSink(pool, retries=2, backoff=0.01).write([least]))
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
        for _ in range(500):  # until the second writer waits on the first (or is done)
            if second.done() or await pool.fetchval(waiting):
                break
            await asyncio.sleep(0.01)
        assert not second.done()  # it waits for the first (a reply lock, or the row)
        await tx.commit()
    assert (await second).failed == {}
    want = (await _model([*outbound, *written, middle, least])).dump()
    got = await dump_tables(pool)
    assert got["incoming_messages"] == want["incoming_messages"]
    assert got["campaign_audience"] == want["campaign_audience"]


async def test_one_wamid_as_status_incoming_and_sent_gives_one_row_in_every_order(
    pool: asyncpg.Pool,
) -> None:
    """Statuses (one to a user known by user id only), an incoming message and the
    sender's record, all with one wamid, in all 24 orders (a wamid of its own per order):
    the same messages row every time, and the reference model's; the incoming sender's
    phone and user id, "" never stored."""
    await _seed(pool)

    def ops(w: str) -> list[Any]:
        by_user_id = status(w, "read", 300, recipient="", recipient_user_id="US.0")
        incoming = text_message(w, "hi", 200, sender="16505559999", from_user_id="US.9")
        return [
            record(notification(statuses=[status(w, "sent", 100, recipient="16505550000")])),
            record(notification(statuses=[by_user_id])),
            record(notification(messages=[incoming])),
            Outbound(1, w, "16505550001", campaign_id=1),
        ]

    sink = PostgresSink(pool)
    orders = list(itertools.permutations(range(4)))
    for n, order in enumerate(orders):
        todo = ops(f"wamid.both{n}")
        await _run(sink, pool, [todo[i] for i in order], [1])
    got = await pool.fetch("SELECT * FROM messages ORDER BY whatsapp_message_id")
    assert len(got) == len(orders)
    # Besides ids and times, the keys: hashes of items that name their own wamid.
    skip = {"id", "created_at", "updated_at", "whatsapp_message_id", "content_key", "status_key"}
    first = {k: v for k, v in got[0].items() if k not in skip}
    assert (first["phone_number"], first["user_id"]) == ("16505559999", "US.9")
    for row in got[1:]:
        assert {k: v for k, v in row.items() if k not in skip} == first
    want = (await _model(ops("wamid.both0"))).dump()["messages"]
    have = [
        r
        for r in (await dump_tables(pool))["messages"]
        if r["whatsapp_message_id"] == "wamid.both0"
    ]
    assert have == want
