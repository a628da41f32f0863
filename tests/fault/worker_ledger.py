"""The ledger through ``wahook worker``: every body sent three times as separate SQS
messages (moto's server), four workers on the queue, killed and restarted, PostgreSQL
behind a cuttable relay."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.fault.chaos import Chaos, Plan, stop_all
from tests.fault.ledger import (
    Databases,
    LedgerRun,
    Progress,
    against_crash_free,
    delivery_order,
    final_dump,
)
from tests.fault.processes import WAHOOK, Managed, ProcessSet, child_env
from tests.fault.tcp_proxy import CuttableRelay
from tests.plugins.sqs import queue_counts, send_bodies

WORKERS = 4  # on one queue
# Two receivers and two writers each: four workers and moto share the machine's cores.
WORKER_FLAGS = {
    "--receivers": "2",
    "--writers": "2",
    "--batch-size": "500",
    "--batch-max-age": "0.1",
    "--grace": "5",
    "--progress-every": "0.5",  # its first line says the worker is up
    "--log-format": "json",
}
SQS_BACKLOG = 600  # messages the sender lets the queue hold


def make_queues(client: Any, name: str, *, visibility: int, max_receive: int) -> tuple[str, str]:
    """A queue and its dead-letter queue (after ``max_receive`` receives)."""
    dlq = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(max_receive),
    }
    attributes = {"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)}
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return str(url), str(dlq)


async def _worker_run(
    db_dsn: str,
    bodies: Sequence[bytes],
    plan: Plan,
    workdir: Path,
    time_limit: float,
    sqs: Any,
    endpoint: str,
    queues: tuple[str, str],
) -> LedgerRun:
    """Send every body ``COPIES`` times as separate messages, in a shuffled order, while
    ``WORKERS`` processes consume the queue and are killed and the database cut. Done when
    everything was sent and the queue is empty (nothing visible, nothing in flight)."""
    queue_url, dlq_url = queues
    messages = [bodies[i] for i in delivery_order(len(bodies), plan.seed)]
    run = LedgerRun("worker", len(bodies), len(messages))
    progress = Progress()
    sent = 0
    started = time.monotonic()
    async with CuttableRelay.for_dsn(db_dsn) as relay:
        with ProcessSet(workdir / "logs") as procs:
            env = child_env({"WAHOOK_QUEUE_URL": queue_url, "WAHOOK_DSN": relay.dsn(db_dsn)})
            roles = [
                procs.add(
                    f"worker-{n}",
                    [
                        *WAHOOK,
                        "worker",
                        "--endpoint-url",
                        endpoint,
                        *(part for pair in WORKER_FLAGS.items() for part in pair),
                    ],
                    env,
                )
                for n in range(1, WORKERS + 1)
            ]

            async def is_up(role: Managed) -> bool:
                # The first progress line comes once the pool is open and the pipeline runs.
                path = role.log_paths[-1]
                return path.exists() and b'"progress"' in path.read_bytes()

            chaos = Chaos(run, plan, roles, relay, progress, is_up)
            for role in roles:
                role.start()
            for role in roles:
                await chaos.wait_up(role)

            stop_sending = threading.Event()

            def send_all() -> None:
                # moto's calls cost O(queue length): keep the queue short while sending.
                nonlocal sent
                for start in range(0, len(messages), 100):
                    while sum(queue_counts(sqs, queue_url)) > SQS_BACKLOG:
                        if stop_sending.wait(0.1):
                            return
                    if stop_sending.is_set():
                        return
                    chunk = list(messages[start : start + 100])
                    send_bodies(sqs, queue_url, chunk)
                    sent += len(chunk)

            async def watch() -> None:
                while True:
                    counts = await asyncio.to_thread(queue_counts, sqs, queue_url)
                    progress.note(sent - sum(counts))
                    run.acknowledged = progress.count
                    if sent == len(messages) and counts == (0, 0):
                        return
                    await asyncio.sleep(0.25)

            supervisor = asyncio.create_task(chaos.supervise())
            try:
                async with asyncio.timeout(time_limit), asyncio.TaskGroup() as group:
                    group.create_task(chaos.play())
                    group.create_task(asyncio.to_thread(send_all))
                    group.create_task(watch())
                supervisor.cancel()
                run.stop_codes = await stop_all(roles)
            finally:
                supervisor.cancel()
                stop_sending.set()
                run.logs = procs.tails()
    run.seconds = time.monotonic() - started
    run.finish(progress)
    run.left_in_queue = sum(queue_counts(sqs, queue_url))
    run.dead_lettered = sum(queue_counts(sqs, dlq_url))
    run.got = await final_dump(db_dsn)
    return run


async def worker_ledger(
    databases: Databases,
    bodies: Sequence[bytes],
    plan: Plan,
    workdir: Path,
    *,
    sqs: Any,
    endpoint: str,
    time_limit: float = 600.0,
) -> LedgerRun:
    """``WORKERS`` × ``wahook worker`` under ``plan`` (a fresh queue, with a dead-letter
    queue after 10 receives), and the crash-free run of ``bodies`` to compare."""
    name = f"ledger-{os.getpid()}-{secrets.token_hex(3)}"
    queues = make_queues(sqs, name, visibility=5, max_receive=10)
    return await against_crash_free(
        databases,
        bodies,
        lambda dsn: _worker_run(dsn, bodies, plan, workdir, time_limit, sqs, endpoint, queues),
    )
