"""Opening the PostgreSQL sink from settings (the worker, replay and the Lambda handler).

The pool is created with ``min_size=0`` so a database that is down at start-up is just a
transient failure of the first batches (retried), not a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from wahook.errors import ConfigError
from wahook.settings import Settings
from wahook.sinks.base import Sink


async def create_pool(settings: Settings) -> Any:
    if not settings.dsn:
        raise ConfigError("no database: set WAHOOK_DSN (or DB_HOST ...) or pass --dsn")
    import asyncpg

    return await asyncpg.create_pool(
        settings.dsn,
        min_size=0,
        max_size=max(1, settings.pool_max),
        max_inactive_connection_lifetime=300,
    )


async def open_postgres_sink(settings: Settings) -> Sink:
    """A PostgreSQL sink whose pool lives as long as the process (the Lambda container)."""
    from wahook.sinks.postgres import PostgresSink

    sink: Sink = PostgresSink(await create_pool(settings))
    return sink


@contextlib.asynccontextmanager
async def postgres_sink(settings: Settings) -> AsyncIterator[Sink]:
    """A PostgreSQL sink whose pool is closed on exit."""
    from wahook.sinks.postgres import PostgresSink

    pool = await create_pool(settings)
    try:
        yield PostgresSink(pool)
    finally:
        await pool.close()
