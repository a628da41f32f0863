"""The SQS long-poll source against moto's server: receive, delete, heartbeat, release."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any

from tests.plugins.sqs import REGION, queue_counts, send_bodies
from tests.unit.test_runtime_pipeline import body
from wahook.runtime.pipeline import Pipeline
from wahook.runtime.sqs_poll import SqsSource
from wahook.sinks.base import Record, WriteResult


class SlowSink:
    """Counts every record it commits; the first write can be held up."""

    def __init__(self, first_delay: float = 0.0, hold: asyncio.Event | None = None) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.first_delay = first_delay
        self.hold = hold
        self.entered = asyncio.Event()

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.first_delay:
            delay, self.first_delay = self.first_delay, 0.0
            await asyncio.sleep(delay)
        self.seen.update(r.id for r in batch)
        return WriteResult(applied=sum(len(r.events) for r in batch))


async def run_until(pipeline: Pipeline, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    while not done():
        await asyncio.sleep(0.05)
        if task.done():
            break
    stop.set()
    await task


def source(url: str, endpoint: str, **kw: Any) -> SqsSource:
    return SqsSource(url, region=REGION, endpoint_url=endpoint, wait_seconds=1, **kw)


async def test_every_message_stored_and_deleted(
    sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    url = sqs_queue()
    ids = send_bodies(sqs_client, url, [body(i) for i in range(120)])
    sink = SlowSink()
    src = source(url, sqs_endpoint, receivers=3)
    await run_until(
        Pipeline(src, sink, batch_size=25, batch_max_age=0.05), lambda: len(sink.seen) >= 120
    )
    assert set(sink.seen) == set(ids)
    assert queue_counts(sqs_client, url) == (0, 0)
    assert src.in_flight == 0


async def test_heartbeat_keeps_a_slow_batch_invisible(
    sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    url = sqs_queue(visibility_timeout=2)
    send_bodies(sqs_client, url, [body(i) for i in range(5)])
    sink = SlowSink(first_delay=5.0)  # 2.5 visibility timeouts
    src = source(url, sqs_endpoint, receivers=2)
    await run_until(Pipeline(src, sink, batch_max_age=0.2), lambda: len(sink.seen) >= 5)
    assert max(sink.seen.values()) == 1, sink.seen  # nothing was redelivered
    assert queue_counts(sqs_client, url) == (0, 0)


async def test_stop_releases_unsettled_messages_at_once(
    sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    url = sqs_queue(visibility_timeout=300)
    send_bodies(sqs_client, url, [body(i) for i in range(7)])
    sink = SlowSink(hold=asyncio.Event())  # never commits
    stop = asyncio.Event()
    src = source(url, sqs_endpoint, receivers=1)
    task = asyncio.create_task(Pipeline(src, sink, batch_max_age=0.05, grace=0.2).run(stop))
    await sink.entered.wait()
    # Polling the queue itself: there is no event to wait on.
    while queue_counts(sqs_client, url)[0]:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert queue_counts(sqs_client, url) == (7, 0)  # visible again, not after 300 s


async def test_settle_deduplicates_receipts_and_survives_bad_ones(
    sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    url = sqs_queue()
    send_bodies(sqs_client, url, [body(i) for i in range(3)])
    async with source(url, sqs_endpoint) as src:
        batch: list[Any] = []
        while len(batch) < 3:
            batch += await src.next_batch() or []
        # A second copy of one message (same receipt) and a lease with a forged receipt.
        src._leases["forged"] = type(src._leases[batch[0].id])("not-a-receipt", 0.0)
        forged = type(batch[0])(id="forged", body=b"{}")
        await src.settle([*batch, batch[0], forged], failed=())
        assert src.in_flight == 0
    assert queue_counts(sqs_client, url) == (0, 0)


class RefusingSink(SlowSink):
    """Reports every record whose body holds ``marker`` as failed (never committed)."""

    def __init__(self, marker: bytes) -> None:
        super().__init__()
        self.marker = marker
        self.refused = 0

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        failed = {r.id: "refused" for r in batch if self.marker in r.raw}
        self.refused += len(failed)
        result = await super().write([r for r in batch if r.id not in failed])
        result.failed = failed
        return result


async def test_a_record_that_never_commits_ends_in_the_dead_letter_queue(
    sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    url = sqs_queue(visibility_timeout=1, max_receive=2)
    dlq = url + "-dlq"
    refused = body(99).replace(b"wamid.out99", b"wamid.REFUSED")
    send_bodies(sqs_client, url, [body(1), refused, body(2)])
    sink = RefusingSink(b"wamid.REFUSED")
    src = source(url, sqs_endpoint, receivers=1)
    await run_until(
        Pipeline(src, sink, batch_max_age=0.05),
        lambda: queue_counts(sqs_client, dlq)[0] == 1,
    )
    assert sink.refused == 2  # received twice, never acknowledged, then dead-lettered
    assert len(sink.seen) == 2
    assert queue_counts(sqs_client, url) == (0, 0)
    [moved] = sqs_client.receive_message(QueueUrl=dlq)["Messages"]
    assert moved["Body"].encode() == refused
