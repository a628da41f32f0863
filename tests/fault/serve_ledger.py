"""The ledger through ``wahook serve``: a signing HTTP client POSTs every body three times,
retrying each POST until it is answered 200 as Meta does, while ``serve`` (in-process
pipeline, PostgreSQL behind a cuttable relay) is killed and restarted."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import asyncpg

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
from tests.plugins.sqs import _free_port
from wahook.parse import decode
from wahook.parse.signature import sign

SECRET = "ledger-deployment-wide-secret"  # WEBHOOK_SECRET: every organization's bodies
CONCURRENCY = 16  # POSTs at once


def event_keys(body: bytes) -> set[tuple[str | None, str]]:
    """(wamid, status value or message type) of each event: distinct in ``webhook_traffic``."""
    return {(ev.wamid, ev.type) for ev in decode(body).events()}


async def check_stored(
    db_dsn: str, bodies: Sequence[bytes], acked: set[int], run: LedgerRun
) -> None:
    """Right after a kill: every body answered 200 so far has all its events stored.
    Checked on the database itself, past the relay (which may be cut)."""
    snapshot = set(acked)
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch("SELECT whatsapp_message_id, event_type FROM webhook_events")
    finally:
        await conn.close()
    stored = {(r["whatsapp_message_id"], r["event_type"]) for r in rows}
    run.durability_checks += 1
    run.acked_not_stored += sorted(i for i in snapshot if not event_keys(bodies[i]) <= stored)


async def _http_ok(url: str) -> bool:
    def get() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return await asyncio.to_thread(get)


async def _serve_run(
    db_dsn: str, bodies: Sequence[bytes], plan: Plan, workdir: Path, time_limit: float
) -> LedgerRun:
    """POST every body ``COPIES`` times, retrying each POST until it is answered 200 (as
    Meta does), while ``serve`` is killed and the database cut."""
    order = delivery_order(len(bodies), plan.seed)
    run = LedgerRun("serve", len(bodies), len(order))
    progress = Progress()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    async with CuttableRelay.for_dsn(db_dsn) as relay:
        with ProcessSet(workdir / "logs") as procs:
            serve = procs.add(
                "serve",
                [
                    *WAHOOK,
                    "serve",
                    "--port",
                    str(port),
                    "--dsn",
                    relay.dsn(db_dsn),
                    "--data-dir",
                    str(workdir / "serve"),
                    "--grace",
                    "5",
                ],
                child_env({"WEBHOOK_SECRET": SECRET, "WAHOOK_LOG_FORMAT": "json"}),
            )

            async def is_up(role: Managed) -> bool:
                return await _http_ok(f"{base}/readyz")

            acked: set[int] = set()

            async def acknowledged_are_stored() -> None:
                await check_stored(db_dsn, bodies, acked, run)

            chaos = Chaos(run, plan, [serve], relay, progress, is_up, acknowledged_are_stored)
            serve.start()
            await chaos.wait_up(serve)
            pending: asyncio.Queue[int] = asyncio.Queue()
            for i in order:
                pending.put_nowait(i)

            async def deliver(session: aiohttp.ClientSession) -> None:
                while not pending.empty():
                    index = pending.get_nowait()
                    body = bodies[index]
                    headers = {
                        "X-Hub-Signature-256": sign(body, SECRET),
                        "Content-Type": "application/json",
                    }
                    for _ in range(2000):  # bounded; the overall timeout bounds time
                        try:
                            async with session.post(
                                f"{base}/webhook", data=body, headers=headers
                            ) as response:
                                await response.read()
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            run.refusals[type(exc).__name__] += 1
                        else:
                            if response.status == 200:
                                run.acknowledged += 1
                                acked.add(index)
                                progress.note(run.acknowledged)
                                break
                            assert response.status == 503, response.status
                            run.refusals["503"] += 1
                        await asyncio.sleep(0.05)
                    else:
                        raise AssertionError("a body was never acknowledged")

            client_timeout = aiohttp.ClientTimeout(total=60)
            supervisor = asyncio.create_task(chaos.supervise())
            try:
                async with (
                    aiohttp.ClientSession(timeout=client_timeout) as session,
                    asyncio.timeout(time_limit),
                    asyncio.TaskGroup() as group,
                ):
                    group.create_task(chaos.play())
                    for _ in range(CONCURRENCY):
                        group.create_task(deliver(session))
                supervisor.cancel()
                run.stop_codes = await stop_all([serve])
            finally:
                supervisor.cancel()
                run.logs = procs.tails()
    run.seconds = time.monotonic() - started
    run.finish(progress)
    run.got = await final_dump(db_dsn)
    return run


async def serve_ledger(
    databases: Databases,
    bodies: Sequence[bytes],
    plan: Plan,
    workdir: Path,
    *,
    time_limit: float = 600.0,
) -> LedgerRun:
    """``wahook serve`` under ``plan``, and the crash-free run of ``bodies`` to compare."""
    return await against_crash_free(
        databases, bodies, lambda dsn: _serve_run(dsn, bodies, plan, workdir, time_limit)
    )
