"""Where a batch's database time goes: each statement of the sink, per event, on the
pipeline's traffic, plus how the status updates of `messages` were applied (HOT or not).

The whole pipeline runs as in ``bench_pipeline.py`` (the same traffic and database
seed), with the sink's connection wrapped so each statement is timed by its name in
``wahook/sinks/sql/``. ``--before-0004`` undoes migration 0004 after migrating (messages
at 70% fill, the btree on the audit trail's (organization, wamid)), to compare with it;
``--fillfactor N`` sets another fill factor for ``messages`` (after the rest).

    .venv/bin/python benchmarks/profile_statements.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/profile_statements.py --dsn ... --before-0004
    .venv/bin/python benchmarks/profile_statements.py --dsn ... --fillfactor 30
    .venv/bin/python benchmarks/profile_statements.py --dsn ... --writers 2 --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_pipeline
import wahook.sinks.postgres as sink_module
from wahook.runtime.logs import configure_logging
from wahook.runtime.tuning import tune_gc
from wahook.settings import Settings
from wahook.testing import webhook_traffic

BEFORE_0004 = """
ALTER TABLE messages SET (fillfactor = 70);
DROP INDEX webhook_events_message_idx;
CREATE INDEX webhook_events_message_idx ON webhook_events (organization_id, whatsapp_message_id)
    WHERE whatsapp_message_id IS NOT NULL;
"""


def statement_names() -> dict[str, str]:
    """SQL text -> its file name, for every statement the sinks run."""
    folder = resources.files("wahook.sinks").joinpath("sql")
    return {
        entry.read_text("utf-8"): entry.name.removesuffix(".sql")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


class TimedConnection:
    """A connection whose statements add their seconds to ``spent`` by name."""

    def __init__(self, conn: Any, spent: collections.Counter[str], names: dict[str, str]):
        self._conn, self._spent, self._names = conn, spent, names

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._conn, attr)
        if attr not in ("execute", "fetch", "fetchval", "fetchrow", "copy_records_to_table"):
            return target

        async def timed(first: str, *args: Any, **kwargs: Any) -> Any:
            name = (
                f"copy {first}"
                if attr == "copy_records_to_table"
                else self._names.get(first, "other")
            )
            start = time.perf_counter()
            try:
                return await target(first, *args, **kwargs)
            finally:
                self._spent[name] += time.perf_counter() - start

        return timed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="server DSN (default WAHOOK_DSN); a database per run")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--before-0004", action="store_true", help="undo migration 0004")
    parser.add_argument("--fillfactor", type=int, help="fill factor of messages (10-100)")
    args = parser.parse_args()
    server = args.dsn or os.environ.get("WAHOOK_DSN")
    if not server:
        parser.error("pass --dsn (or set WAHOOK_DSN) to a PostgreSQL server")
    configure_logging("console", "warning")
    n = bench_pipeline.bodies_for(args.events)
    bodies = list(webhook_traffic(n))
    tune_gc(Settings().gc_threshold)

    spent: collections.Counter[str] = collections.Counter()
    names = statement_names()
    apply_prepared = sink_module.apply_prepared

    async def timed_apply(conn: asyncpg.Connection, prep: Any) -> Any:
        return await apply_prepared(TimedConnection(conn, spent, names), prep)  # type: ignore[arg-type]

    sink_module.apply_prepared = timed_apply  # apply_items looks it up at each call
    if args.fillfactor is not None and not 10 <= args.fillfactor <= 100:
        parser.error("--fillfactor: between 10 and 100")
    if args.before_0004 or args.fillfactor is not None:
        migrate = bench_pipeline.migrate

        async def migrate_then_alter(conn: asyncpg.Connection) -> Any:
            done = await migrate(conn)
            if args.before_0004:
                await conn.execute(BEFORE_0004)
            if args.fillfactor is not None:
                await conn.execute(f"ALTER TABLE messages SET (fillfactor = {args.fillfactor})")
            return done

        bench_pipeline.migrate = migrate_then_alter  # type: ignore[assignment]

    made: list[str] = []
    try:
        dsn = await bench_pipeline.fresh_database(server, "stmts", n, made)
        seconds, events, (own, backends) = await bench_pipeline.run_wahook(
            dsn, bodies, args.batch_size, args.writers
        )
        schema = "before migration 0004" if args.before_0004 else "current schema"
        if args.fillfactor is not None:
            schema += f", messages at fill factor {args.fillfactor}"
        print(f"{events:,} events, batch {args.batch_size}, {args.writers} writer(s), {schema}: "
              f"{events / seconds:,.0f} events/s")  # fmt: skip
        pg = "unknown" if backends is None else f"{backends / events * 1e6:.1f}"
        print(f"CPU per event: this process {own / events * 1e6:.1f} µs, backends {pg} µs")
        print("statement wall time per event (µs), summed over writers:")
        for name, secs in spent.most_common():
            print(f"  {name:32s} {secs / events * 1e6:6.2f}")
        conn = await asyncpg.connect(dsn)
        try:
            await asyncio.sleep(1.0)  # the backends report their counters when idle
            for r in await conn.fetch(
                "SELECT relname, n_tup_upd, n_tup_hot_upd, pg_total_relation_size(relid) AS size"
                " FROM pg_stat_user_tables WHERE relname IN ('messages', 'webhook_events')"
                " ORDER BY relname"
            ):
                size = f"{r['size'] / 2**20:.0f} MiB with indexes"
                if r["n_tup_upd"]:
                    hot = r["n_tup_hot_upd"] / r["n_tup_upd"]
                    print(f"{r['relname']}: {r['n_tup_upd']:,} updates, {hot:.0%} HOT; {size}")
                else:
                    print(f"{r['relname']}: {size}")
        finally:
            await conn.close()
    finally:
        await bench_pipeline.drop_databases(server, made)


if __name__ == "__main__":
    asyncio.run(main())
