"""The crash and fault ledger: real ``wahook serve`` / ``wahook worker`` processes, killed
with SIGKILL and restarted, the database cut and restored under them, while a client keeps
delivering signed bodies — then the tables are compared with a crash-free run.

Used by ``tests/fault/test_crash_ledger.py`` (CI scale) and ``benchmarks/reliability.py``
(the README's Reliability table). Everything is on 127.0.0.1; every wait is bounded.

Terms:
- a *delivery* is one POST (serve) or one SQS message (worker); every body is delivered
  ``COPIES`` (3) times, in a seeded random order, as Meta and SQS redeliver;
- *acknowledged*: answered 200 by ``serve``; deleted from the queue by a worker;
- *lost*: an event of the crash-free run missing from the faulty one; *duplicated*: an
  event stored more than once, or a stored event the crash-free run does not have;
- *recovery*: from the end of a fault (the process restarted, the connection restored)
  to the next acknowledgement.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import secrets
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.fault.processes import WAHOOK, Managed, ProcessSet, child_env
from tests.fault.tcp_proxy import CuttableRelay
from tests.plugins.sqs import _free_port, queue_counts, send_bodies
from wahook.parse import decode
from wahook.parse.signature import sign
from wahook.runtime.pipeline import Pipeline
from wahook.sinks.memory import dump_order
from wahook.sinks.postgres import PostgresSink, add_organization
from wahook.testing import (
    TRAFFIC_PHONE_NUMBER_ID,
    TRAFFIC_WABA_ID,
    MemorySource,
    dump_tables,
)

Dump = dict[str, list[dict[str, Any]]]

# Columns that say which copy arrived first and when (the source's message id, the
# receipt time): they differ between any two runs by nature, faults or not.
_ARRIVAL = frozenset({"received_at", "source_message_id"})
ARRIVAL_COLUMNS = {"webhook_events": _ARRIVAL, "quarantine": _ARRIVAL}

SECRET = "ledger-deployment-wide-secret"  # WEBHOOK_SECRET: every organization's bodies
COPIES = 3  # deliveries of every body
CONCURRENCY = 16  # POSTs at once
WORKERS = 4  # on one queue
UP_TIMEOUT = 90.0  # seconds a restarted process gets to come up
POLL = 0.05
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


@dataclasses.dataclass
class Fault:
    what: str  # "kill serve", "kill worker-2", "cut database 3.0 s"
    began: float
    ended: float = 0.0
    recovered: float | None = None

    @property
    def recovery(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.ended


class Progress:
    """Acknowledgements over time, to find when work resumed after a fault."""

    def __init__(self) -> None:
        self.count = 0
        self.history: list[tuple[float, int]] = [(time.monotonic(), 0)]

    def note(self, count: int) -> None:
        if count != self.count:
            self.count = count
            self.history.append((time.monotonic(), count))

    def first_after(self, moment: float) -> float | None:
        before = max((c for t, c in self.history if t <= moment), default=0)
        return next((t for t, c in self.history if t > moment and c > before), None)


@dataclasses.dataclass
class LedgerRun:
    scenario: str
    bodies: int
    deliveries: int
    acknowledged: int = 0
    faults: list[Fault] = dataclasses.field(default_factory=list)
    unplanned_exits: list[str] = dataclasses.field(default_factory=list)
    stop_codes: list[int | None] = dataclasses.field(default_factory=list)  # SIGTERM at the end
    refusals: Counter[str] = dataclasses.field(default_factory=Counter)  # serve: why retried
    # serve: bodies answered 200 whose events were not all in the database when serve was
    # killed (checked then, before a later copy of the same body could hide the loss)
    acked_not_stored: list[int] = dataclasses.field(default_factory=list)
    durability_checks: int = 0
    dead_lettered: int = 0
    left_in_queue: int = 0
    seconds: float = 0.0
    got: Dump = dataclasses.field(default_factory=dict)
    want: Dump = dataclasses.field(default_factory=dict)
    logs: str = ""

    def finish(self, progress: Progress) -> None:
        for fault in self.faults:
            fault.recovered = progress.first_after(fault.ended)

    @property
    def lost(self) -> int:
        got = Counter(r["dedup_key"] for r in self.got.get("webhook_events", []))
        return sum(1 for r in self.want.get("webhook_events", []) if r["dedup_key"] not in got)

    @property
    def duplicated(self) -> int:
        got = Counter(r["dedup_key"] for r in self.got.get("webhook_events", []))
        want = {r["dedup_key"] for r in self.want.get("webhook_events", [])}
        return sum(n - 1 for n in got.values()) + sum(1 for k in got if k not in want)

    @property
    def worst_recovery(self) -> float | None:
        times = [f.recovery for f in self.faults if f.recovery is not None]
        return max(times) if times else None

    def fault_summary(self) -> str:
        kinds = Counter(f.what.split(" ")[0] for f in self.faults)
        return ", ".join(
            f"{n} {'kills' if k == 'kill' else 'cuts'}" if n > 1 else f"1 {k}"
            for k, n in sorted(kinds.items())
        )


# --- the database: what a run leaves, and what a crash-free run gives --------------------


def comparable(dump: Dump) -> Dump:
    """``dump`` without the arrival columns, sorted again."""
    out: Dump = {}
    for table, rows in dump.items():
        drop = ARRIVAL_COLUMNS.get(table, frozenset())
        kept = [{k: v for k, v in r.items() if k not in drop} for r in rows]
        out[table] = sorted(kept, key=dump_order)  # the dropped columns took part in the order
    return out


async def final_dump(dsn: str) -> Dump:
    conn = await asyncpg.connect(dsn)
    try:
        return comparable(await dump_tables(conn))
    finally:
        await conn.close()


async def crash_free_dump(dsn: str, bodies: Sequence[bytes]) -> Dump:
    """Each body once, in order, through the same pipeline and sink, nothing failing."""
    async with asyncpg.create_pool(dsn, min_size=1, max_size=4) as pool:
        source = MemorySource(bodies, batch_max=200)
        await Pipeline(source, PostgresSink(pool), batch_size=1000, batch_max_age=0.05).run()
        assert source.acked == len(bodies)
        assert not source.failed
        return comparable(await dump_tables(pool))


# --- chaos: the faults, at seeded random points of the run ------------------------------


@dataclasses.dataclass
class Plan:
    kills: int
    cuts: int
    cut_seconds: tuple[float, ...]  # the n-th cut lasts cut_seconds[n % len]
    seed: int

    def points(self, total: int) -> list[tuple[int, str, float]]:
        """(acknowledgements to wait for, "kill" or "cut", cut length), in order."""
        rng = random.Random(self.seed)
        kinds = ["kill"] * self.kills + ["cut"] * self.cuts
        rng.shuffle(kinds)
        marks = sorted(int(total * rng.uniform(0.08, 0.85)) for _ in kinds)
        lengths = iter(self.cut_seconds * self.cuts)
        return [
            (m, k, next(lengths) if k == "cut" else 0.0) for m, k in zip(marks, kinds, strict=True)
        ]


async def stop_all(roles: Sequence[Managed]) -> list[int | None]:
    """SIGTERM every role at once and wait in threads: the relay they close their
    connections through runs on this event loop, which must keep turning meanwhile."""
    return list(await asyncio.gather(*(asyncio.to_thread(role.stop) for role in roles)))


async def bounded_wait(done: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while not done():  # noqa: ASYNC110  (no event to wait on: a process, a queue)
            await asyncio.sleep(POLL)


class Chaos:
    """Runs the plan against ``targets`` while the run goes, restarting what it killed and
    (counted as unplanned) anything that exited on its own."""

    def __init__(
        self,
        run: LedgerRun,
        plan: Plan,
        targets: Sequence[Managed],
        relay: CuttableRelay,
        progress: Progress,
        is_up: Callable[[Managed], Awaitable[bool]],
        after_kill: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.run, self.plan, self.targets = run, plan, list(targets)
        self.relay, self.progress, self.is_up = relay, progress, is_up
        self.after_kill = after_kill
        self.rng = random.Random(plan.seed + 1)
        self._killed: set[str] = set()  # down on purpose: not the supervisor's to restart

    async def wait_up(self, role: Managed) -> None:
        async with asyncio.timeout(UP_TIMEOUT):
            while not await self.is_up(role):
                if not role.running:
                    raise AssertionError(f"{role.name} exited while starting:\n{role.tail()}")
                await asyncio.sleep(POLL * 4)

    async def supervise(self) -> None:
        """Restart a role that exited without being killed (and say so)."""
        while True:
            for role in self.targets:
                if role.name in self._killed:
                    continue
                if not role.running and len(self.run.unplanned_exits) < 10:
                    self.run.unplanned_exits.append(f"{role.name}: {role.tail(800)}")
                    role.start()
            await asyncio.sleep(POLL * 4)

    async def play(self) -> None:
        for mark, kind, seconds in self.plan.points(self.run.deliveries):
            await bounded_wait(lambda m=mark: self.progress.count >= m, 600)
            if kind == "kill":
                role = self.rng.choice(self.targets)
                fault = Fault(f"kill {role.name}", time.monotonic())
                self._killed.add(role.name)
                role.kill()
                if self.after_kill is not None:
                    await self.after_kill()
                await asyncio.sleep(self.rng.uniform(0.0, 0.5))
                role.start()
                self._killed.discard(role.name)
                fault.ended = time.monotonic()
                self.run.faults.append(fault)
                await self.wait_up(role)
            else:
                fault = Fault(f"cut database {seconds:g} s", time.monotonic())
                await self.relay.cut()
                await asyncio.sleep(seconds)
                await self.relay.restore()
                fault.ended = time.monotonic()
                self.run.faults.append(fault)


# --- serve: HTTP client -> wahook serve (in-process pipeline) -> PostgreSQL --------------


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


# --- worker: SQS (every body 3x) -> four wahook workers -> PostgreSQL ---------------------


def make_queues(client: Any, name: str, *, visibility: int, max_receive: int) -> tuple[str, str]:
    """A queue and its dead-letter queue (after ``max_receive`` receives)."""
    import json

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


# --- the scenarios, each against a crash-free run ---------------------------------------

Databases = Callable[[], AbstractAsyncContextManager[str]]
"""``async with databases() as dsn``: a fresh migrated database on 127.0.0.1."""


def delivery_order(bodies: int, seed: int) -> list[int]:
    """Every body index ``COPIES`` times, shuffled (copies may be delivered at once)."""
    order = [i for i in range(bodies) for _ in range(COPIES)]
    random.Random(seed).shuffle(order)
    return order


async def add_tenant(dsn: str) -> None:
    """The organization ``webhook_traffic`` bodies belong to."""
    conn = await asyncpg.connect(dsn)
    try:
        await add_organization(
            conn, name="Acme", phone_number_id=TRAFFIC_PHONE_NUMBER_ID, waba_id=TRAFFIC_WABA_ID
        )
    finally:
        await conn.close()


async def serve_ledger(
    databases: Databases,
    bodies: Sequence[bytes],
    plan: Plan,
    workdir: Path,
    *,
    time_limit: float = 600.0,
) -> LedgerRun:
    """``wahook serve`` under ``plan``, and the crash-free run of ``bodies`` to compare."""
    async with databases() as faulty, databases() as reference:
        await add_tenant(faulty)
        await add_tenant(reference)
        run = await _serve_run(faulty, bodies, plan, workdir, time_limit)
        run.want = await crash_free_dump(reference, bodies)
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
    async with databases() as faulty, databases() as reference:
        await add_tenant(faulty)
        await add_tenant(reference)
        run = await _worker_run(faulty, bodies, plan, workdir, time_limit, sqs, endpoint, queues)
        run.want = await crash_free_dump(reference, bodies)
    return run
