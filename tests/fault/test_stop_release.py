"""``wahook worker`` stopped during a database outage: the README promises that what it
could not commit "goes back to the queue at once (visibility 0)". Found while building the
crash ledger: the release raced the worker's own ReceiveMessage long polls, which were still
open at the server when the worker released and exited. Such a poll took the released
messages (up to 10 each) for nobody, so they waited out the queue's visibility timeout and
gained a receive count towards the dead-letter queue. Now the source waits for its open polls
before it releases, and releases what they brought too. Real SQS keeps a long poll alive
after the client that made it is gone (aws/aws-sdk-js#2350, aws/aws-sdk-java#2083); moto
checks for newly visible messages about once a second."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fault.chaos import bounded_wait
from tests.fault.ledger import add_tenant
from tests.fault.processes import WAHOOK, ProcessSet, child_env
from tests.fault.tcp_proxy import CuttableRelay
from tests.fault.worker_ledger import WORKER_FLAGS
from tests.plugins.sqs import queue_counts, send_bodies
from wahook.testing import webhook_traffic

BODIES = 100
VISIBILITY = 120  # seconds: far beyond the test, so "at once" cannot be confused with it


@pytest.mark.slow
async def test_sigterm_during_an_outage_gives_every_message_back_at_once(
    db_dsn: str,
    sqs_endpoint: str,
    sqs_client: Any,
    sqs_queue: Callable[..., str],
    tmp_path: Path,
) -> None:
    await add_tenant(db_dsn)
    url = sqs_queue(visibility_timeout=VISIBILITY, max_receive=10)
    async with CuttableRelay.for_dsn(db_dsn) as relay:
        with ProcessSet(tmp_path) as procs:
            flags = (part for pair in WORKER_FLAGS.items() for part in pair)
            worker = procs.add(
                "worker",
                [*WAHOOK, "worker", "--endpoint-url", sqs_endpoint, *flags],
                child_env({"WAHOOK_QUEUE_URL": url, "WAHOOK_DSN": relay.dsn(db_dsn)}),
            )
            worker.start()
            log = worker.log_paths[-1]
            await bounded_wait(lambda: b'"progress"' in log.read_bytes(), 90)
            await relay.cut()
            await asyncio.to_thread(send_bodies, sqs_client, url, list(webhook_traffic(BODIES)))
            # Everything received, nothing committable: all of it is in flight.
            await bounded_wait(lambda: queue_counts(sqs_client, url) == (0, BODIES), 60)
            await asyncio.sleep(1.0)  # the receivers poll again, finding nothing visible
            code = await asyncio.to_thread(worker.stop)
            assert code == 0, worker.tail()
            assert b'"messages_released"' in log.read_bytes(), worker.tail()
    # Watched for 5 s, far short of the visibility timeout: every message visible, and
    # none taken again by a receive the stopped worker left open.
    seen = []
    for _ in range(20):
        seen.append(queue_counts(sqs_client, url))
        await asyncio.sleep(0.25)
    assert set(seen) == {(BODIES, 0)}, f"(visible, in flight) after the stop: {seen}"
