"""The whole pipeline: raw webhook bodies → decode → batch → PostgreSQL → settle, against
a processor written the way the original two-Lambda design does it, in the same run.

Workload: ``wahook.testing.webhook_traffic`` — single statuses, waves of 20 statuses,
incoming texts, button replies, batches of 10 incoming messages (5.25 events per body).
The outgoing messages the statuses refer to are recorded first, in every database.

1. wahook: an in-memory source of the bodies through ``Pipeline`` into ``PostgresSink``;
   events/s end to end (decoding included, the bodies made before timing).
2. original design: each SQS record ``json.loads``-ed, its organization looked up, then one
   autocommitted UPDATE/INSERT per event per table (messages, campaign_audience,
   incoming_messages, webhook_events); run on a subset, events/s.
3. memory: the same pipeline in fresh processes with 100k and 1M events, bodies generated
   lazily; peak RSS of each (it should not grow with the input).
4. worker overhead per SQS message: a moto server on 127.0.0.1, the SQS long-poll source
   through the pipeline into a sink that does nothing; the worker's CPU time per message.

    .venv/bin/python benchmarks/bench_pipeline.py --dsn postgresql://postgres@127.0.0.1/postgres
    .venv/bin/python benchmarks/bench_pipeline.py --quick          # smaller, for a smoke run
    .venv/bin/python benchmarks/bench_pipeline.py --dsn ... --loop-lag   # + event-loop lag
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wahook.parse import decode
from wahook.runtime.logs import configure_logging
from wahook.runtime.pipeline import Pipeline
from wahook.runtime.tuning import tune_gc
from wahook.settings import Settings
from wahook.sinks.base import Record, WriteResult
from wahook.sinks.migrate import migrate
from wahook.sinks.postgres import PostgresSink, add_organization
from wahook.testing import (
    TRAFFIC_PHONE_NUMBER_ID,
    TRAFFIC_WABA_ID,
    MemorySource,
    traffic_events,
    webhook_traffic,
)


class NullSink:
    async def write(self, batch: Sequence[Record]) -> WriteResult:
        return WriteResult(applied=sum(len(r.events) for r in batch))


def bodies_for(events: int) -> int:
    return max(20, events * 20 // 105 // 20 * 20)


# --- databases -------------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def fresh_database(server: str, label: str, bodies: int, made: list[str]) -> str:
    """A migrated database with the organization and the outgoing messages of ``bodies``."""
    name = f"wahook_benchpipe_{label}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    made.append(name)
    dsn = with_database(server, name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        org = await add_organization(
            conn, name="bench", phone_number_id=TRAFFIC_PHONE_NUMBER_ID, waba_id=TRAFFIC_WABA_ID
        )
        # The outgoing messages statuses refer to: body i (i % 20 < 8) -> 20 i; a wave
        # (8 <= i % 20 < 12) -> 20 i + k. See webhook_traffic.
        await conn.execute(
            """
            INSERT INTO messages (organization_id, whatsapp_message_id, direction,
                                  phone_number, message_type, message_status)
            SELECT $1, 'wamid.HBgLOUT' || lpad(n::text, 12, '0') || 'FQIAERgSQUFB',
                   'outbound', '1650555' || lpad((n % 1000000)::text, 6, '0'),
                   'template', 'accepted'
            FROM generate_series(0, $2::bigint * 20 - 1) AS n
            WHERE (n / 20) % 20 < 8 AND n % 20 = 0 OR (n / 20) % 20 BETWEEN 8 AND 11
            """,
            org,
            bodies,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return dsn


async def drop_databases(server: str, made: list[str]) -> None:
    admin = await asyncpg.connect(server)
    try:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# --- 1. wahook -------------------------------------------------------------------------


class CpuClock:
    """CPU seconds of this process and of the pool's PostgreSQL backends (read from
    ``/proc``, so only when the server runs on this machine; else ``None``)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    @staticmethod
    def _backend(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def read(self) -> tuple[float, float | None]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        backends = [self._backend(pid) for pid in self.pids]
        known = None if None in backends else sum(b for b in backends if b is not None)
        return usage.ru_utime + usage.ru_stime, known


class LoopLag:
    """How late a 0.5 ms sleep wakes up, sampled all along: the time a task that is ready
    (a writer whose statement finished) waits for the event loop."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.0005)
            self.lags.append(time.perf_counter() - start - 0.0005)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> str:
        lags = sorted(self.lags) or [0.0]

        def at(q: float) -> float:
            return lags[min(len(lags) - 1, int(len(lags) * q))] * 1e3

        spread = ", ".join(f"p{round(q * 100)} {at(q):.2f} ms" for q in (0.5, 0.9, 0.99))
        return f"{spread}, max {lags[-1] * 1e3:.1f} ms"


async def run_wahook(
    dsn: str,
    bodies: Sequence[bytes] | int,
    batch_size: int,
    writers: int,
    lag: LoopLag | None = None,
) -> tuple[float, int, tuple[float, float | None]]:
    """Seconds and events for the pipeline over ``bodies`` (a count: generated lazily),
    and the CPU seconds it took: this process, the pool's backends (``None``: unknown).
    ``lag``: probed during the run only."""
    source_bodies = webhook_traffic(bodies) if isinstance(bodies, int) else bodies
    async with asyncpg.create_pool(dsn, min_size=writers, max_size=writers) as pool:
        conns = [await pool.acquire() for _ in range(writers)]
        clock = CpuClock([await c.fetchval("SELECT pg_backend_pid()") for c in conns])
        for c in conns:
            await pool.release(c)
        source = MemorySource(source_bodies, batch_max=200)
        pipeline = Pipeline(
            source, PostgresSink(pool), batch_size=batch_size, batch_max_age=0.05, writers=writers
        )
        cpu0 = clock.read()
        start = time.perf_counter()
        if lag is not None:
            lag.start()
        stats = await pipeline.run()
        seconds = time.perf_counter() - start
        cpu1 = clock.read()
        if lag is not None:
            lag.stop()
    assert stats.failed == 0, "records failed"
    assert source.failed == [], "records failed"
    backends = None if cpu0[1] is None or cpu1[1] is None else cpu1[1] - cpu0[1]
    return seconds, stats.events, (cpu1[0] - cpu0[0], backends)


async def run_null(bodies: Sequence[bytes], batch_size: int) -> tuple[float, int]:
    """The pipeline into a sink that does nothing: decode, batching, settling only."""
    source = MemorySource(bodies, batch_max=200)
    pipeline = Pipeline(source, NullSink(), batch_size=batch_size, batch_max_age=0.05)
    start = time.perf_counter()
    stats = await pipeline.run()
    return time.perf_counter() - start, stats.events


# --- 2. the original design ------------------------------------------------------------

FIND_ORGANIZATION = (
    "SELECT id FROM organizations WHERE whatsapp_phone_number_id = $1"
    " OR whatsapp_business_account_id = $2 LIMIT 1"
)
UPDATE_MESSAGE = {
    status: f"UPDATE messages SET message_status = $1, {status}_at = NOW(), updated_at = NOW()"
    " WHERE whatsapp_message_id = $2"
    for status in ("sent", "delivered", "read")
}
UPDATE_AUDIENCE = {
    status: f"UPDATE campaign_audience SET message_status = $1, {status}_at = NOW(),"
    " updated_at = NOW() WHERE whatsapp_message_id = $2"
    for status in ("sent", "delivered", "read")
}
INSERT_INCOMING = (
    "INSERT INTO incoming_messages (organization_id, whatsapp_message_id, from_phone_number,"
    " profile_name, message_type, content, interactive_type, interactive_data,"
    " context_message_id, payload, content_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb,"
    " $9, $10::jsonb, $11)"
)
INSERT_EVENT = (
    "INSERT INTO webhook_events (organization_id, field, event_kind, event_type,"
    " whatsapp_message_id, message_status, payload, content_key, dedup_key,"
    " source_message_id) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)"
)


async def original_record(conn: Any, message_id: str, body: str) -> int:
    """One SQS record as the original DB-processor Lambda handles it."""
    doc = json.loads(body)
    events = 0
    for entry in doc.get("entry", []):
        for change in entry.get("changes", []):
            value = change.get("value", {})
            phone = value.get("metadata", {}).get("phone_number_id")
            org = await conn.fetchval(FIND_ORGANIZATION, phone, entry.get("id"))
            field = change.get("field")
            for st in value.get("statuses", []):
                payload = json.dumps(st)
                key = hashlib.sha256(payload.encode()).digest()
                await conn.execute(UPDATE_MESSAGE[st["status"]], st["status"], st["id"])
                await conn.execute(UPDATE_AUDIENCE[st["status"]], st["status"], st["id"])
                await conn.execute(INSERT_EVENT, org, field, "status", st["status"], st["id"],
                                   st["status"], payload, key, key, message_id)  # fmt: skip
                events += 1
            contacts = {c.get("wa_id"): c for c in value.get("contacts", [])}
            for m in value.get("messages", []):
                payload = json.dumps(m)
                key = hashlib.sha256(payload.encode()).digest()
                interactive = m.get("interactive")
                reply = interactive.get(interactive.get("type"), {}) if interactive else None
                name = contacts.get(m.get("from"), {}).get("profile", {}).get("name")
                await conn.execute(
                    INSERT_INCOMING, org, m["id"], m["from"], name, m["type"],
                    (m.get("text") or {}).get("body"),
                    interactive.get("type") if interactive else None,
                    json.dumps(reply) if reply else None,
                    (m.get("context") or {}).get("id"), payload, key,
                )  # fmt: skip
                await conn.execute(INSERT_EVENT, org, field, "message", m["type"], m["id"],
                                   None, payload, key, key, message_id)  # fmt: skip
                events += 1
    return events


async def run_original(dsn: str, bodies: Sequence[bytes]) -> tuple[float, int]:
    conn = await asyncpg.connect(dsn)
    try:
        records = [(f"sqs-{i}", b.decode()) for i, b in enumerate(bodies)]  # SQS bodies: text
        events = 0
        start = time.perf_counter()
        for message_id, body in records:
            events += await original_record(conn, message_id, body)
        return time.perf_counter() - start, events
    finally:
        await conn.close()


# --- 3. memory -------------------------------------------------------------------------


def rss_child(
    dsn: str, events: int, batch_size: int, writers: int, gc_threshold: int
) -> dict[str, float]:
    """Run the pipeline over ``events`` lazily made events in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child-rss", dsn, str(events), str(batch_size),
         str(writers), str(gc_threshold)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def child_rss(
    dsn: str, events: int, batch_size: int, writers: int, gc_threshold: int
) -> None:
    configure_logging("console", "warning")
    tune_gc(gc_threshold)  # as `wahook worker` does at start-up
    seconds, done, _ = await run_wahook(dsn, bodies_for(events), batch_size, writers)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"events": done, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


# --- 4. worker overhead against moto ----------------------------------------------------


async def run_sqs(messages: int) -> tuple[float, float, int]:
    """Wall seconds, worker CPU seconds, messages: SQS source → pipeline → NullSink."""
    import botocore.session
    from aiobotocore.session import get_session
    from tests.plugins.sqs import moto_server, send_bodies  # the tests' patched moto

    from wahook.runtime.sqs_poll import SqsSource

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")
    with moto_server() as endpoint:
        client = botocore.session.get_session().create_client(
            "sqs", region_name="us-east-1", endpoint_url=endpoint
        )
        url = client.create_queue(QueueName="bench")["QueueUrl"]
        send_bodies(client, url, list(webhook_traffic(messages)))
        # The client is made before timing: loading botocore's service model is start-up.
        async with get_session().create_client(
            "sqs", region_name="us-east-1", endpoint_url=endpoint
        ) as sqs:
            source = SqsSource(url, receivers=4, wait_seconds=1, client=sqs)
            pipeline = Pipeline(source, NullSink(), batch_size=1000, batch_max_age=0.05)
            stop = asyncio.Event()
            cpu, start = time.process_time(), time.perf_counter()
            task = asyncio.create_task(pipeline.run(stop))
            # Polling: nothing signals "every message deleted".
            while not (pipeline.stats.messages >= messages and source.in_flight == 0):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            stop.set()
            await task
        client.close()
        return wall, cpu, pipeline.stats.messages


# --- main ------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="server DSN (default WAHOOK_DSN); a database per run")
    parser.add_argument("--events", type=int, default=100_000, help="wahook run (100,000)")
    parser.add_argument("--original-events", type=int, default=5_000, help="original subset")
    parser.add_argument("--rss", default="100000,1000000", help="event counts for peak RSS")
    parser.add_argument("--sqs-messages", type=int, default=2_000, help="worker overhead run")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10x smaller everywhere")
    parser.add_argument(
        "--loop-lag",
        action="store_true",
        help="run the wahook part once more, probing how late the event loop runs ready tasks",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=Settings().gc_threshold,
        help="the collector setting `wahook worker` applies (WAHOOK_GC_THRESHOLD); 0: Python's",
    )
    args = parser.parse_args()
    configure_logging("console", "warning")
    # The process is set up as `wahook worker` sets itself up: the same collector settings
    # for wahook and the original design's processor, which run in this process.
    tune_gc(args.gc_threshold)
    server = args.dsn or os.environ.get("WAHOOK_DSN")
    if not server:
        parser.error("pass --dsn (or set WAHOOK_DSN) to a PostgreSQL server")
    scale = 10 if args.quick else 1
    made: list[str] = []
    try:
        conn = await asyncpg.connect(server)
        version = await conn.fetchval("SHOW server_version")
        settings = [await conn.fetchval(f"SHOW {s}") for s in ("fsync", "synchronous_commit")]
        await conn.close()
        print(
            f"machine: {platform.machine()} {os.cpu_count()} CPUs (shared with PostgreSQL), "
            f"Python {sys.version.split()[0]}, PostgreSQL {version} "
            f"(fsync={settings[0]}, synchronous_commit={settings[1]}); "
            f"gc threshold {gc.get_threshold()}"
        )
        n = bodies_for(args.events // scale)
        bodies = list(webhook_traffic(n))
        print(f"workload: {n:,} bodies, {traffic_events(n):,} events, "
              f"{sum(map(len, bodies)) / 1e6:.1f} MB")  # fmt: skip

        bare = null = 0.0
        for _ in range(3):  # best of three: this machine is shared
            start = time.perf_counter()
            for body in bodies:
                decode(body)
            bare = max(bare, traffic_events(n) / (time.perf_counter() - start))
            seconds, events = await run_null(bodies, args.batch_size)
            null = max(null, events / seconds)
        print(
            f"pipeline without a database: {null:,.0f} events/s (decode alone: {bare:,.0f} "
            f"events/s, best of 3) — the room the pipeline leaves the sink"
        )

        m = bodies_for(args.original_events // scale)
        dsn = await fresh_database(server, "orig", m, made)
        seconds, events = await run_original(dsn, bodies[:m])
        original = events / seconds
        print(f"original design: {events:,} events in {seconds:.1f}s = {original:,.0f} events/s")

        dsn = await fresh_database(server, "wahook", n, made)
        seconds, events, (own, backends) = await run_wahook(
            dsn, bodies, args.batch_size, args.writers
        )
        rate = events / seconds
        print(
            f"wahook pipeline: {events:,} events in {seconds:.2f}s = {rate:,.0f} events/s "
            f"(batch {args.batch_size}, {args.writers} writers) = {rate / original:.1f}x original"
        )
        pg = "unknown (server not local)" if backends is None else f"{backends / events * 1e6:.1f}"
        print(
            f"  CPU per event: this process {own / events * 1e6:.1f} µs, the pool's "
            f"PostgreSQL backends {pg} µs; wall {seconds / events * 1e6:.1f} µs "
            f"on {os.cpu_count()} CPUs"
        )
        if args.loop_lag:
            dsn = await fresh_database(server, "lag", n, made)
            lag = LoopLag()
            seconds, events, (own, backends) = await run_wahook(
                dsn, bodies, args.batch_size, args.writers, lag
            )
            busy = (
                ""
                if backends is None
                else f", the 2 CPUs {(own + backends) / seconds / 2:.0%} busy"
            )
            print(
                f"  loop lag (another run, {events / seconds:,.0f} events/s{busy}): {lag.summary()}"
            )
        del bodies

        peaks = []
        for count in (int(c) // scale for c in args.rss.split(",")):
            dsn = await fresh_database(server, f"rss{count}", bodies_for(count), made)
            r = rss_child(dsn, count, args.batch_size, args.writers, args.gc_threshold)
            peaks.append(r["peak_rss_mib"])
            print(
                f"memory: {r['events']:,.0f} events (lazy bodies) in {r['seconds']:.1f}s = "
                f"{r['events'] / r['seconds']:,.0f} events/s, peak RSS {r['peak_rss_mib']:.0f} MiB"
            )
        if len(peaks) > 1:
            print(f"memory: peak RSS ratio largest/smallest = {peaks[-1] / peaks[0]:.2f}")

        wall, cpu, messages = await run_sqs(max(100, args.sqs_messages // scale))
        print(
            f"worker vs moto: {messages:,} SQS messages in {wall:.1f}s wall "
            f"({messages / wall:,.0f} msg/s, moto-bound); worker CPU "
            f"{cpu / messages * 1e6:,.0f} µs per message (receive, decode, delete)"
        )
        ok = rate >= 30_000 and rate >= 30 * original
        print(f"target (>= 30,000 events/s and >= 30x original): {'met' if ok else 'NOT met'}")
    finally:
        await drop_databases(server, made)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-rss":
        dsn, events, batch, writers, threshold = sys.argv[2], *map(int, sys.argv[3:7])
        asyncio.run(child_rss(dsn, events, batch, writers, threshold))
    else:
        asyncio.run(main())
