"""``wahook worker`` as a real subprocess with real signals: SIGTERM mid-run exits 0 within
the grace period and gives unfinished messages back at once; a second run finishes the
job; every event is stored exactly once; progress lines, Prometheus metrics, no secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.integration.test_pipeline_postgres import add_tenant, count
from tests.plugins.sqs import _free_port, queue_counts, send_bodies
from wahook.testing import traffic_events, webhook_traffic

SECRET = "hunter2-not-needed-by-trust-auth"
HANG_GUARD = 120  # seconds: only so a broken worker cannot hang the suite


def with_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    netloc = f"{user}:{SECRET}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._seen = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
            async with self._seen:
                self._seen.notify_all()

    async def wait_for_event(self, name: str) -> dict[str, Any]:
        async with asyncio.timeout(HANG_GUARD), self._seen:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return event
                if self._reader.done():
                    raise AssertionError(f"worker ended without {name}:\n{''.join(self.lines)}")
                await self._seen.wait()

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(HANG_GUARD):
            code = await self.proc.wait()
            await self._reader
        return code

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]


@contextlib.asynccontextmanager
async def worker(url: str, endpoint: str, dsn: str, *flags: str) -> AsyncIterator[Worker]:
    env = {**os.environ, "WAHOOK_QUEUE_URL": url, "WAHOOK_DSN": with_password(dsn)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wahook.cli", "worker", "--endpoint-url", endpoint,
        "--log-format", "json", "--receivers", "4", *flags,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    w = Worker(proc)
    try:
        yield w
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_mid_run_then_a_second_run_finishes_exactly_once(
    db_dsn: str, pool: Any, sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    await add_tenant(pool)
    url = sqs_queue(visibility_timeout=120)
    bodies = 1000
    send_bodies(sqs_client, url, list(webhook_traffic(bodies)))

    async with worker(
        url, sqs_endpoint, db_dsn, "--grace", "30", "--log-level", "debug", "--batch-size", "300"
    ) as first:
        await first.wait_for_event("batch_committed")
        code = await first.stop()
    assert code == 0, "".join(first.lines)
    names = first.names()
    assert names.index("stop_requested") < names.index("worker_stopped")
    assert "pipeline_grace_expired" not in names
    # Whatever the first run did not settle is visible again at once (not in 120 s).
    visible, in_flight = queue_counts(sqs_client, url)
    assert in_flight == 0
    assert visible < bodies  # it did stop mid-run, after committing something
    stored = await count(pool, "webhook_events")
    assert 0 < stored < traffic_events(bodies)

    metrics_port = _free_port()
    async with worker(
        url, sqs_endpoint, db_dsn, "--grace", "30", "--progress-every", "0.2",
        "--metrics-port", str(metrics_port),
    ) as second:  # fmt: skip
        # Polling the database and the queue: no event says "all done".
        while await count(pool, "webhook_events") < traffic_events(bodies) or queue_counts(  # noqa: ASYNC110
            sqs_client, url
        ) != (0, 0):
            await asyncio.sleep(0.1)
        await second.wait_for_event("progress")
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
        )
        assert await second.stop() == 0, "".join(second.lines)

    assert await count(pool, "webhook_events") == traffic_events(bodies)
    assert await count(pool, "quarantine") == 0
    duplicated = await pool.fetchval(
        "SELECT count(*) FROM (SELECT organization_id, whatsapp_message_id FROM"
        " incoming_messages GROUP BY 1, 2 HAVING count(*) > 1) d"
    )
    assert duplicated == 0
    assert b"wahook_events_total" in metrics
    assert b"wahook_commit_seconds_bucket" in metrics
    for line in first.lines + second.lines:
        assert SECRET not in line
    starting = next(e for e in first.events if e.get("event") == "worker_starting")
    assert "***" in starting["dsn"]


async def test_worker_refuses_to_start_without_a_queue(db_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WAHOOK_QUEUE_URL", "SQS_QUEUE_URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wahook.cli", "worker", "--dsn", db_dsn,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"no queue" in err
