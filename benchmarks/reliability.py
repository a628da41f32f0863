"""The Reliability table of the README: the crash and fault ledger at a chosen scale.

Runs the scenarios of ``tests/fault/test_crash_ledger.py`` — ``wahook serve`` and four
``wahook worker`` processes killed with SIGKILL at seeded random points and restarted, the
database cut and restored under them through a loopback relay, every body delivered three
times — then compares the tables with a crash-free run of the same bodies and prints one
markdown row per scenario. Exit status 1 when anything was lost or duplicated.

Needs a PostgreSQL on 127.0.0.1 (its maintenance DSN; each scenario gets two fresh
databases, dropped afterwards) and starts its own moto SQS server on 127.0.0.1.

    .venv/bin/python benchmarks/reliability.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/reliability.py --dsn ... --bodies 1000 --kills 3 --cuts 1 \
        --cut-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import botocore.session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fault.chaos import Plan
from tests.fault.ledger import COPIES, Databases, LedgerRun
from tests.fault.serve_ledger import serve_ledger
from tests.fault.worker_ledger import worker_ledger
from tests.plugins.postgres import with_database
from tests.plugins.sqs import REGION, moto_server

from wahook.runtime.logs import configure_logging
from wahook.sinks.migrate import migrate_dsn
from wahook.testing import traffic_events, webhook_traffic

NOW = 1_764_000_000
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def databases(server: str) -> Databases:
    """Fresh migrated databases, dropped afterwards. Named like the test suite's, so a
    killed run's leftovers are dropped by the next test session."""

    @contextlib.asynccontextmanager
    async def fresh() -> AsyncIterator[str]:
        name = f"wahook_t_{os.getpid()}_{secrets.token_hex(4)}"
        await _admin(server, f'CREATE DATABASE "{name}"')
        try:
            dsn = with_database(server, name)
            await migrate_dsn(dsn)
            yield dsn
        finally:
            await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return fresh


@contextlib.contextmanager
def sqs() -> Iterator[tuple[str, object]]:
    os.environ.update(FAKE_AWS)  # the workers inherit them
    with moto_server() as endpoint:
        client = botocore.session.get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=endpoint
        )
        try:
            yield endpoint, client
        finally:
            client.close()


def row(run: LedgerRun) -> str:
    kills = [f for f in run.faults if f.what.startswith("kill")]
    cuts = [f for f in run.faults if f.what.startswith("cut")]
    faults = []
    if kills:
        who = "serve" if run.scenario == "serve" else "a worker"
        faults.append(f"{len(kills)} × SIGKILL of {who}, restarted")
    if cuts:
        lengths = ", ".join(f.what.removeprefix("cut database ") for f in cuts)
        faults.append(f"{len(cuts)} × database cut ({lengths})")
    recoveries = [f.recovery for f in run.faults if f.recovery is not None]
    if recoveries:
        recovery = f"worst {max(recoveries):.1f} s, median {statistics.median(recoveries):.1f} s"
    else:
        recovery = "n/a"
    unit = "POSTs" if run.scenario == "serve" else "SQS messages"
    name = (
        "`wahook serve` (in-process pipeline)"
        if run.scenario == "serve"
        else "4 × `wahook worker` on one SQS queue"
    )
    inputs = (
        f"{run.bodies:,} bodies ({traffic_events(run.bodies):,} events) × {COPIES} = "
        f"{run.deliveries:,} {unit}"
    )
    extra = ""
    if run.scenario == "worker":
        extra = f"; left in queue {run.left_in_queue}, dead-lettered {run.dead_lettered}"
    differs = [t for t in run.want if run.got.get(t) != run.want[t]]
    tables = "tables equal to crash-free run" if not differs else f"DIFFER: {', '.join(differs)}"
    return (
        f"| {name} | {inputs} | {'; '.join(faults)} | {run.lost} | {run.duplicated} | "
        f"{recovery} | {run.seconds:.0f} s; {tables}{extra} |"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("WAHOOK_TEST_DSN"),
        help="maintenance DSN of a PostgreSQL on 127.0.0.1 (WAHOOK_TEST_DSN)",
    )
    parser.add_argument("--bodies", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--cuts", type=int, default=2)
    parser.add_argument(
        "--cut-seconds", type=float, nargs="+", default=[5.0, 40.0], help="each cut's length"
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--scenario", choices=("serve", "worker", "all"), default="all")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (or WAHOOK_TEST_DSN) is required")
    configure_logging("console", "warning")  # the crash-free runs' batches: not the table
    bodies = list(webhook_traffic(args.bodies, now=NOW))
    plan = Plan(
        kills=args.kills, cuts=args.cuts, cut_seconds=tuple(args.cut_seconds), seed=args.seed
    )
    runs: list[LedgerRun] = []
    with tempfile.TemporaryDirectory(prefix="wahook-reliability-") as tmp:
        work = Path(tmp)
        limit = 600 + args.bodies * 0.5
        if args.scenario in ("serve", "all"):
            run = await serve_ledger(
                databases(args.dsn), bodies, plan, work / "serve", time_limit=limit
            )
            runs.append(run)
            print(row(run), flush=True)
        if args.scenario in ("worker", "all"):
            with sqs() as (endpoint, client):
                run = await worker_ledger(
                    databases(args.dsn), bodies, plan, work / "worker",
                    sqs=client, endpoint=endpoint, time_limit=limit,
                )  # fmt: skip
            runs.append(run)
            print(row(run), flush=True)
    print()
    print("| scenario | inputs | faults injected | lost | duplicated | recovery time | run |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))
    for run in runs:
        for fault in run.faults:
            recovery = "-" if fault.recovery is None else f"{fault.recovery:.2f} s"
            print(f"  {run.scenario}: {fault.what}: recovered in {recovery}", file=sys.stderr)
        if run.durability_checks:
            print(
                f"  {run.scenario}: at {run.durability_checks} kills, bodies answered 200 but"
                f" not stored: {len(run.acked_not_stored)}",
                file=sys.stderr,
            )
        if run.refusals:
            retried = ", ".join(f"{n} {why}" for why, n in sorted(run.refusals.items()))
            print(f"  {run.scenario}: POSTs retried after: {retried}", file=sys.stderr)
        if run.unplanned_exits:
            print(f"  {run.scenario}: unplanned exits: {len(run.unplanned_exits)}", file=sys.stderr)
    bad = any(
        r.lost
        or r.duplicated
        or r.unplanned_exits
        or r.acked_not_stored
        or any(r.got.get(t) != r.want[t] for t in r.want)
        for r in runs
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
