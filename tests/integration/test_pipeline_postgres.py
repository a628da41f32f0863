"""The pipeline into real PostgreSQL: SQS (moto) end to end, a poison body, and a database
outage in the middle of a run (through a TCP proxy on 127.0.0.1 that we cut)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.plugins.sqs import REGION, queue_counts, send_bodies
from wahook.runtime.failures import RetryPolicy
from wahook.runtime.pipeline import Pipeline
from wahook.runtime.sqs_poll import SqsSource
from wahook.sinks.postgres import Outbound, PostgresSink, add_organization, record_outbound
from wahook.testing import (
    PHONE_NUMBER_ID,
    TRAFFIC_PHONE_NUMBER_ID,
    TRAFFIC_WABA_ID,
    WABA_ID,
    MemorySink,
    MemorySource,
    dump_tables,
    notification,
    record,
    status,
    text_message,
    traffic_events,
    webhook_traffic,
)

POISON = b'{"object": "whatsapp_business_account", "entry": [ this is not JSON'


async def add_tenant(pool: Any) -> int:
    return await add_organization(
        pool, name="Acme", phone_number_id=TRAFFIC_PHONE_NUMBER_ID, waba_id=TRAFFIC_WABA_ID
    )


async def count(pool: Any, table: str, where: str = "true") -> int:
    # Table names come from the tests themselves.
    return int(await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}"))


async def run_until(pipeline: Pipeline, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    while not done() and not task.done():  # noqa: ASYNC110  (no event for "all settled")
        await asyncio.sleep(0.05)
    stop.set()
    await task


class TcpProxy:
    """A loopback TCP proxy in front of PostgreSQL that a test can cut (every connection
    closed, new ones refused) and restore on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes -= {writer, up_writer}

    def dsn(self, dsn: str) -> str:
        parts = urlsplit(dsn)
        netloc = parts.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))


@contextlib.asynccontextmanager
async def proxied_pool(db_dsn: str) -> AsyncIterator[tuple[TcpProxy, Any]]:
    target = urlsplit(db_dsn)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    pool = await asyncpg.create_pool(proxy.dsn(db_dsn), min_size=0, max_size=4)
    try:
        yield proxy, pool
    finally:
        await pool.close()
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_2000_bodies_through_sqs_with_a_poison_body(
    pool: Any, sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    await add_tenant(pool)
    url = sqs_queue()
    bodies = list(webhook_traffic(2000))
    # Sent while the worker runs: moto's queue costs O(queue length) per message sent.
    sending = asyncio.create_task(
        asyncio.to_thread(
            send_bodies, sqs_client, url, [*bodies[:1000], POISON, *bodies[1000:]], backlog=300
        )
    )
    source = SqsSource(url, region=REGION, endpoint_url=sqs_endpoint, receivers=4, wait_seconds=1)
    pipeline = Pipeline(source, PostgresSink(pool), batch_size=1000, batch_max_age=0.1, writers=2)
    await run_until(pipeline, lambda: pipeline.stats.messages >= 2001 and source.in_flight == 0)
    await sending
    assert await count(pool, "webhook_events", "organization_id IS NOT NULL") == traffic_events(
        2000
    )
    assert await count(pool, "quarantine", "kind = 'problem'") == 1
    assert await pool.fetchval("SELECT raw FROM quarantine") == POISON
    assert queue_counts(sqs_client, url) == (0, 0)
    assert pipeline.stats.failed == 0


async def test_database_outage_mid_run_loses_and_duplicates_nothing(
    db_dsn: str, pool: Any, sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    await add_tenant(pool)
    url = sqs_queue(visibility_timeout=5)
    send_bodies(sqs_client, url, list(webhook_traffic(600)))  # short enough for moto
    async with proxied_pool(db_dsn) as (proxy, proxied):
        sink = PostgresSink(proxied, retries=1, backoff=0.01)
        source = SqsSource(url, region=REGION, endpoint_url=sqs_endpoint, wait_seconds=1)
        pipeline = Pipeline(
            source,
            sink,
            batch_size=200,
            batch_max_age=0.05,
            retry=RetryPolicy(first=0.05, cap=0.2, give_up_after=None),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        while pipeline.stats.batches < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await proxy.cut()
        while pipeline.stats.retries < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        # One writer: once it retries, the batches before the cut are committed and settled.
        stored = await count(pool, "webhook_events")
        left = sum(queue_counts(sqs_client, url))
        while pipeline.stats.retries < 6:  # noqa: ASYNC110  (down for a while)
            await asyncio.sleep(0.05)
        # While the database is unreachable nothing is committed and nothing deleted.
        assert await count(pool, "webhook_events") == stored
        assert sum(queue_counts(sqs_client, url)) == left
        assert left > 0
        await proxy.start()  # the same port again
        while not (pipeline.stats.messages >= 600 and source.in_flight == 0):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        stop.set()
        await task
    assert await count(pool, "webhook_events") == traffic_events(600)
    dupes = await pool.fetchval(
        "SELECT count(*) FROM (SELECT whatsapp_message_id FROM incoming_messages"
        " GROUP BY 1 HAVING count(*) > 1) d"
    )
    assert dupes == 0
    assert queue_counts(sqs_client, url) == (0, 0)


async def test_memory_source_into_postgres(pool: Any) -> None:
    await add_tenant(pool)
    source = MemorySource(webhook_traffic(300), batch_max=50)
    stats = await Pipeline(source, PostgresSink(pool), batch_size=500).run()
    assert stats.events == traffic_events(300)
    assert source.acked == 300
    assert await count(pool, "webhook_events") == traffic_events(300)
    # Replaying the same bodies changes nothing: duplicates only.
    again = await Pipeline(MemorySource(webhook_traffic(300)), PostgresSink(pool)).run()
    assert again.duplicates == traffic_events(300)
    assert await count(pool, "webhook_events") == traffic_events(300)


async def test_two_writers_over_shuffled_statuses_and_replies_match_the_model(pool: Any) -> None:
    """The pipeline's writers split the bodies by wamid; with the statuses of 120 campaign
    messages shuffled (duplicates included) and replies, several to the same message,
    spread among them, the tables are those of the in-memory reference model."""
    org = await add_organization(
        pool, name="Acme", phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID
    )
    camp = await pool.fetchval(
        "INSERT INTO campaigns (organization_id, name) VALUES ($1, 'c') RETURNING id", org
    )
    rng = random.Random(7)
    wamids = [f"wamid.camp{n:03d}" for n in range(120)]
    outbound = [Outbound(org, w, f"3161{n:07d}", campaign_id=camp) for n, w in enumerate(wamids)]
    await record_outbound(pool, outbound)
    bodies = [
        notification(statuses=[status(w, s, 1750000000 + 10 * k + rng.randrange(5))])
        for w in wamids
        for k, s in enumerate(("sent", "delivered", "read"))
    ]
    bodies += rng.sample(bodies, 20)  # redelivered
    bodies += [
        notification(
            messages=[
                text_message(
                    f"wamid.in{i:03d}", "ok", 1750000100 + i, reply_to=rng.choice(wamids[:30])
                )
            ]
        )
        for i in range(60)
    ]
    rng.shuffle(bodies)
    source = MemorySource(bodies, batch_max=10)
    stats = await Pipeline(
        source, PostgresSink(pool), batch_size=40, batch_max_age=0.05, writers=2
    ).run()
    assert stats.failed == 0
    assert source.acked == len(bodies)

    model = MemorySink()
    model.add_organization(org, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID)
    model.add_campaign(camp, org)
    await model.record_outbound(outbound)
    await model.write([record(b, id=f"mem-{i}", received_at=None) for i, b in enumerate(bodies)])
    assert await dump_tables(pool) == model.dump()
