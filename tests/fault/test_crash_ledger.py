"""Crash and fault ledger (issue 11): ``wahook serve`` and four ``wahook worker`` processes
are killed with SIGKILL at seeded random points and restarted, and the database is cut and
restored under them through a loopback relay, while every body is delivered three times.
Every acknowledged event must be stored exactly once, and the final tables must equal a
crash-free run of the same bodies.

This holds on main today: the ledger is a regression guard. CI runs 1,000 bodies with three
kills and one cut per scenario (``LEDGER_SEED`` picks other random points);
``-m benchmark`` runs 10,000 bodies with six kills and two cuts (5 s and 40 s), as
``benchmarks/reliability.py`` does for the README's Reliability table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fault.chaos import Plan
from tests.fault.ledger import Databases, LedgerRun
from tests.fault.serve_ledger import check_stored, serve_ledger
from tests.fault.tcp_proxy import CuttableRelay
from tests.fault.worker_ledger import worker_ledger
from wahook.testing import traffic_events, webhook_traffic

NOW = 1_764_000_000  # fixed event timestamps: both runs see the very same bodies
SEED = int(os.environ.get("LEDGER_SEED", "11"))
SCALES = [
    pytest.param(
        1000, Plan(kills=3, cuts=1, cut_seconds=(3.0,), seed=SEED), id="ci", marks=pytest.mark.slow
    ),
    pytest.param(
        10_000,
        Plan(kills=6, cuts=2, cut_seconds=(5.0, 40.0), seed=SEED + 1),
        id="10k",
        marks=pytest.mark.benchmark,
    ),
]


def assert_ledger(run: LedgerRun, plan: Plan) -> None:
    report = f"{run.scenario}: faults={[(f.what, f.recovery) for f in run.faults]}\n{run.logs}"
    assert run.unplanned_exits == [], report + "\n".join(run.unplanned_exits)
    assert len(run.faults) == plan.kills + plan.cuts, report
    assert run.acknowledged == run.deliveries, report
    assert run.stop_codes, report
    assert set(run.stop_codes) == {0}, report  # SIGTERM at the end: a clean exit
    # Every acknowledged event stored exactly once ...
    events = run.got["webhook_events"]
    assert len(events) == traffic_events(run.bodies), report
    assert len({e["dedup_key"] for e in events}) == len(events), report
    outbound = [(m["organization_id"], m["whatsapp_message_id"]) for m in run.got["messages"]]
    assert len(set(outbound)) == len(outbound), report
    assert run.got["quarantine"] == [], report
    assert (run.lost, run.duplicated) == (0, 0), report
    # ... and nothing else differs from a run that never failed.
    for table in run.want:
        assert run.got[table] == run.want[table], first_difference(table, run) + report


def first_difference(table: str, run: LedgerRun) -> str:
    """The first differing row pair of ``table``, column by column, to read in a failure."""
    for got, want in zip(run.got[table], run.want[table], strict=False):
        if got != want:
            columns = {
                k: (got.get(k), want.get(k))
                for k in got.keys() | want.keys()
                if got.get(k) != want.get(k)
            }
            return f"{table}: first differing row, (faulty run, crash-free run): {columns}\n"
    return f"{table}: {len(run.got[table])} rows, crash-free run {len(run.want[table])}\n"


@pytest.mark.parametrize(("bodies", "plan"), SCALES)
async def test_serve_killed_and_cut_stores_each_acknowledged_event_once(
    fresh_db: Databases, tmp_path: Path, bodies: int, plan: Plan
) -> None:
    run = await serve_ledger(
        fresh_db,
        list(webhook_traffic(bodies, now=NOW)),
        plan,
        tmp_path,
        time_limit=300 + bodies * 0.3,
    )
    assert [f.what for f in run.faults].count("kill serve") == plan.kills
    # Answered 200 means committed: checked at each kill, before another copy could mask it.
    assert run.durability_checks == plan.kills
    assert run.acked_not_stored == [], run.logs
    assert_ledger(run, plan)


@pytest.mark.parametrize(("bodies", "plan"), SCALES)
async def test_four_workers_killed_and_cut_store_each_message_once(
    fresh_db: Databases,
    sqs_endpoint: str,
    sqs_client: Any,
    tmp_path: Path,
    bodies: int,
    plan: Plan,
) -> None:
    run = await worker_ledger(
        fresh_db,
        list(webhook_traffic(bodies, now=NOW)),
        plan,
        tmp_path,
        sqs=sqs_client,
        endpoint=sqs_endpoint,
        time_limit=300 + bodies * 0.3,
    )
    # Every sent message deleted, none dead-lettered.
    assert (run.left_in_queue, run.dead_lettered) == (0, 0), run.logs
    assert_ledger(run, plan)


async def test_relay_cut_resets_connections_and_restore_serves_again(db_dsn: str) -> None:
    async with CuttableRelay.for_dsn(db_dsn) as relay:
        conn = await asyncpg.connect(relay.dsn(db_dsn))
        assert await conn.fetchval("SELECT 1") == 1
        await relay.cut()
        with pytest.raises((OSError, asyncpg.PostgresConnectionError)):
            await conn.fetchval("SELECT 1")
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(relay.dsn(db_dsn), timeout=5)
        port = relay.port
        await relay.restore()
        assert relay.port == port
        again = await asyncpg.connect(relay.dsn(db_dsn))
        assert await again.fetchval("SELECT 2") == 2
        await again.close()
        conn.terminate()
    assert (relay.cuts, relay.connections_reset) == (1, 1)


def test_the_ledger_counts_a_lost_and_a_duplicated_event() -> None:
    """The comparison the tests rely on can fail: one event missing, one stored twice."""
    want = {"webhook_events": [{"dedup_key": b"a"}, {"dedup_key": b"b"}]}
    run = LedgerRun("serve", 2, 2, want=want, got={"webhook_events": [{"dedup_key": b"a"}]})
    assert (run.lost, run.duplicated) == (1, 0)
    run.got = {"webhook_events": [{"dedup_key": b"a"}, {"dedup_key": b"b"}, {"dedup_key": b"b"}]}
    assert (run.lost, run.duplicated) == (0, 1)
    run.got = {"webhook_events": [{"dedup_key": b"a"}, {"dedup_key": b"b"}, {"dedup_key": b"c"}]}
    assert (run.lost, run.duplicated) == (0, 1)


async def test_the_durability_check_names_acknowledged_bodies_not_stored(db_dsn: str) -> None:
    bodies = list(webhook_traffic(2, now=NOW))
    run = LedgerRun("serve", 2, 2)
    await check_stored(db_dsn, bodies, {0, 1}, run)  # an empty database: nothing stored
    assert run.acked_not_stored == [0, 1]
    await check_stored(db_dsn, bodies, set(), run)
    assert run.acked_not_stored == [0, 1]
    assert run.durability_checks == 2
