"""The crash and fault ledger: real ``wahook serve`` / ``wahook worker`` processes, killed
with SIGKILL and restarted, the database cut and restored under them, while a client keeps
delivering signed bodies — then the tables are compared with a crash-free run.

This module holds a run's record and the comparison; ``chaos.py`` injects the faults;
``serve_ledger.py`` and ``worker_ledger.py`` are the two scenarios, run by
``tests/fault/test_crash_ledger.py`` (CI scale) and ``benchmarks/reliability.py`` (the
README's Reliability table). Everything is on 127.0.0.1; every wait is bounded.

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

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

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
Databases = Callable[[], AbstractAsyncContextManager[str]]
"""``async with databases() as dsn``: a fresh migrated database on 127.0.0.1."""

# Columns that say which copy arrived first and when (the source's message id, the
# receipt time): they differ between any two runs by nature, faults or not.
_ARRIVAL = frozenset({"received_at", "source_message_id"})
ARRIVAL_COLUMNS = {"webhook_events": _ARRIVAL, "quarantine": _ARRIVAL}

COPIES = 3  # deliveries of every body


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


# --- what both scenarios share ---------------------------------------------------------


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


async def against_crash_free(
    databases: Databases, bodies: Sequence[bytes], faulty: Callable[[str], Awaitable[LedgerRun]]
) -> LedgerRun:
    """Two fresh databases with the traffic's organization: ``faulty(dsn)`` runs on one, the
    crash-free run of ``bodies`` on the other, whose tables become the run's ``want``."""
    async with databases() as faulty_dsn, databases() as reference:
        await add_tenant(faulty_dsn)
        await add_tenant(reference)
        run = await faulty(faulty_dsn)
        run.want = await crash_free_dump(reference, bodies)
    return run
