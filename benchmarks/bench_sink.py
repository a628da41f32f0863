"""PostgreSQL sink throughput: wahook's batched sink against the obvious alternatives.

Workload: 100,000 status events over 40,000 wamids (sent/delivered/read, shuffled, ~2%
duplicates) plus 10,000 incoming messages (30% replies to campaign messages), each event
its own record (one SQS message per POST), with their audit rows. Before timing, the
40,000 outbound messages are recorded (half of them in a campaign, with audience rows).

In the same run, each into a fresh migrated database:
  (i)   per-event: the original two-Lambda design's statements, one UPDATE/INSERT per event
        per table, each in autocommit (less work than wahook does: no monotone merge, no
        audience sync, so its tables are not the reference's); run on a subset and
        reported as events/s;
  (ii)  wahook's PostgresSink at batch 1,000 and 5,000 (one writer; then two writers,
        batches round-robin, and two writers with the records split by wamid the way
        ``Pipeline`` splits them among its writers);
  (iii) the ceiling: COPY of the same number of audit rows into an UNLOGGED table with no
        constraints or indexes.
Also: the SQL share of (ii) at batch 5,000 (rows prepared in Python beforehand, only the
transactions timed), the bound of any Python-side optimisation.
And (iv) the floor: a strict subset of the work every sink must do here, its rows built
before timing (only the driver and the server timed), on one and on two connections (the
records split by wamid as between writers): per 5,000 events, in one
transaction, the audit rows COPY'd into a logged table whose only index is the unique
dedup key, and one UPDATE of the batch's messages rows (status and rank only: no
monotone merge, no audience, no incoming tables, no conflict handling). No sink doing
more than this can be faster than it on this server.
Also measured, to choose the write strategy: the audit-row upsert of a 5,000 batch as
UNNEST arrays vs COPY into a temporary table then INSERT ... SELECT ... ON CONFLICT.

Every table written by (ii) is compared with the in-memory reference model (MemorySink).

    .venv/bin/python benchmarks/bench_sink.py                      # WAHOOK_DSN, or embedded
    .venv/bin/python benchmarks/bench_sink.py --dsn postgresql://postgres@127.0.0.1/postgres
    .venv/bin/python benchmarks/bench_sink.py --quick              # 10x smaller
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from wahook.runtime.pipeline import writer_of
from wahook.sinks import sql
from wahook.sinks.base import Record
from wahook.sinks.migrate import migrate
from wahook.sinks.postgres import (
    Item,
    Outbound,
    PostgresSink,
    TenantRouter,
    _Prepared,
    add_organization,
    apply_prepared,
    record_outbound,
)
from wahook.testing import (
    PHONE_NUMBER_ID,
    WABA_ID,
    MemorySink,
    dump_tables,
    notification,
    status,
    text_message,
)
from wahook.testing import record as make_record


def workload(
    statuses: int, wamids: int, incoming: int, seed: int = 1
) -> tuple[list[Record], list[Outbound]]:
    rng = random.Random(seed)
    ids = [f"wamid.HBgL{n:08d}" for n in range(wamids)]
    outbound = [
        Outbound(1, w, f"3161{n:07d}", campaign_id=1 if n % 2 == 0 else None, content="Hi {{1}}")
        for n, w in enumerate(ids)
    ]
    unique = int(statuses * 0.98)
    events: list[bytes] = []
    steps = [("sent", 0), ("delivered", 5), ("read", 60)]
    while len(events) < unique:
        for w in ids:
            base = 1750000000 + rng.randint(0, 86400)
            for name, delay in steps:
                if len(events) >= unique or (name != "sent" and rng.random() < 0.17):
                    continue
                item = status(w, name, base + delay, recipient="3161")
                if name == "sent":
                    item["pricing"] = {
                        "billable": True,
                        "pricing_model": "PMP",
                        "category": "marketing",
                    }
                events.append(notification(statuses=[item]))
            if len(events) >= unique:
                break
        steps = [("delivered", 7), ("read", 90)]  # top-up statuses on a second pass
    events += rng.sample(events, statuses - unique)  # ~2% duplicates
    for n in range(incoming):
        reply_to = ids[rng.randrange(wamids)] if rng.random() < 0.3 else None
        item = text_message(
            f"wamid.IN{n:08d}",
            f"reply {n}",
            1750090000 + n,
            reply_to=reply_to,
            sender=f"3162{n:07d}",
        )
        events.append(notification(messages=[item]))
    rng.shuffle(events)
    records = [
        make_record(b, id=f"sqs-{i}", received_at=1750100000.0) for i, b in enumerate(events)
    ]
    return records, outbound


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


class Databases:
    def __init__(self, server_dsn: str) -> None:
        self.server_dsn = server_dsn
        self.made: list[str] = []

    async def fresh(self, label: str) -> str:
        name = f"wahook_bench_{label}_{secrets.token_hex(3)}"
        admin = await asyncpg.connect(self.server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.made.append(name)
        dsn = with_database(self.server_dsn, name)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return dsn

    async def drop_all(self) -> None:
        admin = await asyncpg.connect(self.server_dsn)
        try:
            for name in self.made:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def seed(pool: asyncpg.Pool, outbound: list[Outbound]) -> None:
    org = await add_organization(
        pool, name="bench", phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID
    )
    camp = await pool.fetchval(
        "INSERT INTO campaigns (organization_id, name) VALUES ($1, 'bench') RETURNING id", org
    )
    assert (org, camp) == (1, 1)
    for i in range(0, len(outbound), 5000):
        await record_outbound(pool, outbound[i : i + 5000])
    await pool.execute("VACUUM ANALYZE")


async def run_sink(
    dsn: str,
    records: list[Record],
    outbound: list[Outbound],
    batch: int,
    writers: int = 1,
    by_wamid: bool = False,
) -> float:
    """``writers`` workers sharing one pool: batch i going to worker i % writers, or
    (``by_wamid``) each record to the worker ``Pipeline`` gives it (``writer_of``: by
    wamid), each worker batching its own."""
    async with asyncpg.create_pool(dsn, min_size=1, max_size=max(2, writers)) as pool:
        await seed(pool, outbound)
        sink = PostgresSink(pool)
        if by_wamid:
            shares = [[r for r in records if writer_of(r, writers) == k] for k in range(writers)]
            queues = [[s[i : i + batch] for i in range(0, len(s), batch)] for s in shares]
        else:
            batches = [records[i : i + batch] for i in range(0, len(records), batch)]
            queues = [batches[k::writers] for k in range(writers)]

        async def worker(k: int) -> None:
            for part in queues[k]:
                result = await sink.write(part)
                assert not result.failed, result.failed

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(writers)))
        return time.perf_counter() - start


async def run_sql_share(
    dsn: str, records: list[Record], outbound: list[Outbound], batch: int
) -> float:
    """Seconds of the SQL alone at ``batch``: every batch's rows prepared beforehand (not
    timed), then its transaction (staging COPYs, upserts, commit) timed. What remains when
    the sink's Python costs nothing: the bound of any Python-side optimisation."""
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await seed(pool, outbound)
        router = TenantRouter()
        async with pool.acquire() as conn:
            await router.refresh(conn)
        preps = [
            _Prepared([Item(r.id, r.received_at, r.events) for r in records[i : i + batch]], router)
            for i in range(0, len(records), batch)
        ]
        start = time.perf_counter()
        for prep in preps:
            async with pool.acquire() as conn, conn.transaction():
                await apply_prepared(conn, prep)
        return time.perf_counter() - start


# The original design's statements: one UPDATE/INSERT per event per table, autocommitted.
ORIGINAL_STATUS = [
    "UPDATE messages SET message_status = $3, updated_at = now() WHERE organization_id = $1"
    " AND whatsapp_message_id = $2",
    "UPDATE campaign_audience SET message_status = $3, updated_at = now()"
    " WHERE organization_id = $1 AND whatsapp_message_id = $2",
]
ORIGINAL_INCOMING = [
    "INSERT INTO incoming_messages (organization_id, whatsapp_message_id, from_phone_number,"
    " message_type, content, context_message_id, payload, content_key)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) ON CONFLICT DO NOTHING",
    "INSERT INTO messages (organization_id, whatsapp_message_id, direction, phone_number,"
    " message_type, content) VALUES ($1, $2, 'inbound', $3, $4, $5) ON CONFLICT DO NOTHING",
]
ORIGINAL_AUDIT = (
    "INSERT INTO webhook_events (organization_id, field, event_kind, event_type,"
    " whatsapp_message_id, message_status, waba_id, phone_number_id, event_at, payload,"
    " payload_raw, content_key, dedup_key, source_message_id, received_at) VALUES ($1, $2, $3,"
    " $4, $5, $6, $7, $8, to_timestamp($9), $10::jsonb, $11, $12, $13, $14, to_timestamp($15))"
    " ON CONFLICT DO NOTHING"
)


async def run_per_event(dsn: str, records: list[Record], outbound: list[Outbound]) -> float:
    """The original design: each event alone, every statement its own autocommit."""
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await seed(pool, outbound)
        router = TenantRouter()
        async with pool.acquire() as conn:
            await router.refresh(conn)
            prepared = [_Prepared([Item(r.id, r.received_at, r.events)], router) for r in records]
            start = time.perf_counter()
            for prep in prepared:
                for row in prep.event_rows():
                    await conn.execute(ORIGINAL_AUDIT, *row)
                for s in prep.statuses.values():
                    for statement in ORIGINAL_STATUS:
                        await conn.execute(statement, s[0], s[1], s[4])
                if prep.inbound:
                    incoming = prep.inbound_rows()
                    for i in incoming:
                        org, wamid, phone, type_, content = i[0], i[1], i[2], i[5], i[6]
                        await conn.execute(
                            ORIGINAL_INCOMING[0],
                            org,
                            wamid,
                            phone,
                            type_,
                            content,
                            i[19],
                            i[23],
                            i[25],
                        )
                        await conn.execute(ORIGINAL_INCOMING[1], org, wamid, phone, type_, content)
            return time.perf_counter() - start


# The audit rows' columns as the ceiling and the floor store them.
AUDIT_COLUMNS = (
    "(organization_id bigint, field text, event_kind text, event_type text,"
    " whatsapp_message_id text, message_status text, waba_id text, phone_number_id text,"
    " event_at bigint, payload jsonb, payload_raw bytea, content_key bytea, dedup_key bytea"
    " {unique}, source_message_id text, received_at float8)"
)


async def run_copy(dsn: str, records: list[Record]) -> float:
    """The ceiling: the audit rows COPY'd into an unlogged table without constraints."""
    router = TenantRouter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE UNLOGGED TABLE copy_ceiling " + AUDIT_COLUMNS.format(unique=""))
        await router.refresh(conn)
        rows: list[tuple[Any, ...]] = []
        for r in records:
            prep = _Prepared([Item(r.id, r.received_at, r.events)], router)
            rows.extend(tuple(row) for row in prep.events.values())
        start = time.perf_counter()  # only the COPY itself: the ceiling
        await conn.copy_records_to_table("copy_ceiling", records=rows)
        return time.perf_counter() - start
    finally:
        await conn.close()


FLOOR_STATUS = (
    "UPDATE messages m SET message_status = t.status, status_rank = t.rank, updated_at = now()"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int2[]) AS t(org, wamid, status, rank)"
    " WHERE m.organization_id = t.org AND m.whatsapp_message_id = t.wamid"
)


async def run_floor(
    dsn: str, records: list[Record], outbound: list[Outbound], batch: int, connections: int
) -> float:
    """Seconds of the floor (see the module's docstring) on ``connections`` connections,
    the records split among them by wamid as ``Pipeline`` splits them among writers."""
    async with asyncpg.create_pool(dsn, min_size=connections, max_size=connections) as pool:
        await seed(pool, outbound)
        await pool.execute("CREATE TABLE floor_audit " + AUDIT_COLUMNS.format(unique="UNIQUE"))
        router = TenantRouter()
        async with pool.acquire() as conn:
            await router.refresh(conn)
        seen: set[bytes] = set()  # a plain COPY cannot skip a key stored before: leave it out
        work: list[list[tuple[list[tuple[Any, ...]], list[list[Any]]]]] = []
        for k in range(connections):
            share = [r for r in records if writer_of(r, connections) == k]
            work.append([])
            for i in range(0, len(share), batch):
                prep = _Prepared(
                    [Item(r.id, r.received_at, r.events) for r in share[i : i + batch]], router
                )
                audit = [tuple(row) for key, row in sorted(prep.events.items()) if key not in seen]
                seen.update(prep.events)
                # A merged status row: org, wamid, (phone, user id), status, rank, ...
                merged = [
                    list(c)
                    for c in zip(
                        *(s[:2] + s[4:6] for _, s in sorted(prep.statuses.items())), strict=True
                    )
                ]
                work[k].append((audit, merged))

        async def connection(part: list[tuple[list[tuple[Any, ...]], list[list[Any]]]]) -> None:
            async with pool.acquire() as conn:
                for audit, merged in part:
                    async with conn.transaction():
                        await conn.copy_records_to_table("floor_audit", records=audit)
                        if merged:
                            await conn.execute(FLOOR_STATUS, *merged)

        start = time.perf_counter()
        await asyncio.gather(*(connection(part) for part in work))
        return time.perf_counter() - start


UNNEST_EVENTS = (
    "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::float8[], $10::text[], $11::bytea[], $12::bytea[],"
    " $13::bytea[], $14::text[], $15::float8[]) AS t(org, field, kind, type, wamid, status,"
    " waba, pnid, at, payload, raw, ckey, dkey, src, recv)"
)


async def strategy(dsn: str, records: list[Record], batch: int) -> tuple[float, float]:
    """Seconds to upsert the audit rows of ``batch`` records, best of 5: parameter arrays
    through UNNEST vs (what the sink does) COPY into a staging table + INSERT ... SELECT."""
    router = TenantRouter()
    conn = await asyncpg.connect(dsn)
    try:
        await router.refresh(conn)
        prep = _Prepared([Item(r.id, r.received_at, r.events) for r in records[:batch]], router)
        rows = prep.event_rows()
        cols = [list(c) for c in zip(*rows, strict=True)]
        staged_sql = sql.load("write_events")
        unnest_sql = staged_sql.replace("FROM wahook_stage_events", UNNEST_EVENTS)
        assert unnest_sql != staged_sql
        timings = []
        for mode in ("unnest", "copy") * 5:
            tr = conn.transaction()
            await tr.start()
            start = time.perf_counter()
            if mode == "unnest":
                await conn.fetchval(unnest_sql, *cols)
            else:
                await conn.execute(sql.load("stage_tables"))
                await conn.copy_records_to_table(
                    "wahook_stage_events", records=rows, schema_name="pg_temp"
                )
                await conn.fetchval(staged_sql)
            timings.append((mode, time.perf_counter() - start))
            await tr.rollback()  # each trial into the same empty table
        u = min(t for m, t in timings if m == "unnest")
        c = min(t for m, t in timings if m == "copy")
        return u, c
    finally:
        await conn.close()


async def verify(dsn: str, records: list[Record], outbound: list[Outbound]) -> None:
    memory = MemorySink()
    memory.add_organization(1, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID)
    memory.add_campaign(1, 1)
    await memory.record_outbound(outbound)
    await memory.write(records)
    conn = await asyncpg.connect(dsn)
    try:
        got = await dump_tables(conn)
    finally:
        await conn.close()
    want = memory.dump()
    for table in want:
        if got[table] != want[table]:
            raise SystemExit(f"MISMATCH in {table}: the sink's rows differ from the reference")
        print(f"  {table:<18} {len(got[table]):>7} rows, identical to the Python reference")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="server DSN (a database on it is created per run)")
    parser.add_argument("--quick", action="store_true", help="a 10x smaller workload")
    parser.add_argument(
        "--per-event-subset",
        type=int,
        default=3_000,
        help="events run through the per-event design (default 3,000)",
    )
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    server = args.dsn or os.environ.get("WAHOOK_DSN")
    embedded = None
    if not server:
        from wahook.sinks.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(tempfile.mkdtemp(prefix="wahook-bench-"), database="postgres")
        os.chmod(embedded.data_dir, 0o755)
        server = embedded.start()
    dbs = Databases(server)
    try:
        records, outbound = workload(100_000 // scale, 40_000 // scale, 10_000 // scale)
        # A worker holds one batch, not 110,000 decoded records: keep the cyclic GC from
        # walking the whole pre-decoded workload again and again while the sink runs.
        gc.collect()
        gc.freeze()
        n = len(records)
        conn = await asyncpg.connect(server)
        version = await conn.fetchval("SHOW server_version")
        fsync = await conn.fetchval("SHOW fsync")
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
        await conn.close()
        print(
            f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {sys.version.split()[0]},"
            f" PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync_commit})"
        )
        print(
            f"workload: {n:,} events ({sum(len(r.events) for r in records):,} items), "
            f"{len(outbound):,} outbound messages recorded first"
        )

        # The machine may be shared: the baselines run twice, before and after wahook's
        # runs, and the ratios use their mean, so a change of load biases neither side.
        subset = records[: min(args.per_event_subset // scale, n)]
        half = len(subset) // 2
        per_event_runs: list[float] = []
        ceiling_runs: list[float] = []

        async def baselines(part: list[Record]) -> None:
            t = await run_per_event(await dbs.fresh("perevent"), part, outbound)
            per_event_runs.append(len(part) / t)
            print(
                f"(i)   per-event, autocommit: {len(part):,} events in {t:.1f}s "
                f"= {len(part) / t:,.0f} events/s (subset, extrapolated)"
            )
            t = await run_copy(await dbs.fresh("copy"), records)
            ceiling_runs.append(n / t)
            print(f"(iii) COPY ceiling (unlogged, no constraints): {t:.2f}s = {n / t:,.0f} rows/s")

        await baselines(subset[:half])
        results: dict[str, float] = {}
        for batch in (1000, 5000):
            dsn = await dbs.fresh(f"b{batch}")
            t = await run_sink(dsn, records, outbound, batch)
            results[f"batch {batch}"] = n / t
            print(f"(ii)  wahook batch {batch:>5}: {t:.2f}s = {n / t:,.0f} events/s")
            if batch == 5000:
                await verify(dsn, records, outbound)
        dsn = await dbs.fresh("sql")
        t = await run_sql_share(dsn, records, outbound, 5000)
        results["batch 5000, SQL share"] = n / t
        print(
            f"(ii)  batch  5000, SQL share only (rows prepared beforehand): {t:.2f}s"
            f" = {n / t:,.0f} events/s"
        )
        await verify(dsn, records, outbound)
        for by_wamid, how in ((False, "batches round-robin"), (True, "records by wamid")):
            dsn = await dbs.fresh("w2")
            t = await run_sink(dsn, records, outbound, 5000, writers=2, by_wamid=by_wamid)
            results[f"batch 5000, 2 writers, {how}"] = n / t
            print(f"(ii)  wahook batch  5000, 2 writers, {how}: {t:.2f}s = {n / t:,.0f} events/s")
            await verify(dsn, records, outbound)
        await baselines(subset[half:])
        for connections in (1, 2):
            t = await run_floor(await dbs.fresh("floor"), records, outbound, 5000, connections)
            results[f"floor, {connections} connection{'s' * (connections > 1)}"] = n / t
            print(f"(iv)  floor, {connections} connection(s): {t:.2f}s = {n / t:,.0f} events/s")

        u, c = await strategy(await dbs.fresh("strategy"), records, 5000)
        print(
            f"strategy (audit upsert, 5,000 rows): UNNEST {u * 1000:.0f} ms, "
            f"COPY to temp + INSERT…SELECT {c * 1000:.0f} ms"
        )
        per_event = sum(per_event_runs) / len(per_event_runs)
        ceiling = sum(ceiling_runs) / len(ceiling_runs)
        print(
            f"\nbaselines (mean of before and after): per-event {per_event:,.0f} events/s, "
            f"COPY {ceiling:,.0f} rows/s"
        )
        for label, rate in results.items():
            who = "" if label.startswith("floor") else "wahook "
            print(
                f"{who + label:<52} {rate:>8,.0f} events/s  {rate / per_event:6.1f}x per-event"
                f"  {rate / ceiling:.2f}x COPY"
            )
        single = results["batch 5000"]
        ok = single >= 50 * per_event and single >= 0.25 * ceiling
        print(
            f"target (batch 5,000 >= 50x per-event and >= 0.25x COPY): {'met' if ok else 'NOT met'}"
        )
        floor = results["floor, 1 connection"]  # the target is one writer's
        if floor < 0.25 * ceiling:
            print(
                f"  the floor on one connection (a strict part of one writer's work, rows built"
                f" before timing) reaches {floor / ceiling:.2f}x COPY: no one-writer sink reaches"
                " 0.25x on this server"
            )
    finally:
        await dbs.drop_all()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
