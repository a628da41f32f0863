"""Schema migrations: versioned SQL files shipped in ``sinks/sql/migrations``.

``migrate()`` applies what is missing, each migration in its own transaction, under a
session advisory lock, so any number of processes may run it at once: the first applies,
the others wait and then find nothing to do.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from wahook.errors import MigrationError
from wahook.sinks import sql

if TYPE_CHECKING:
    import asyncpg

# pg_advisory_lock key: the first 8 bytes of sha256("wahook.migrate"), as a signed bigint.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"wahook.migrate").digest()[:8], "big", signed=True)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def applied(conn: asyncpg.Connection) -> dict[int, str]:
    """version -> checksum of the migrations already applied (empty on a fresh database)."""
    exists = await conn.fetchval(sql.load("migrations_table_exists"))
    if not exists:
        return {}
    return {r["version"]: r["checksum"] for r in await conn.fetch(sql.load("migrations_applied"))}


async def pending(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    """(version, name) of the shipped migrations not applied yet."""
    done = await applied(conn)
    return [(v, name) for v, name, _ in sql.migrations() if v not in done]


async def migrate(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    """Apply every missing migration; return the (version, name) pairs applied here."""
    import asyncpg

    shipped = sql.migrations()
    done_here: list[tuple[int, str]] = []
    await conn.execute(sql.load("migrations_lock"), LOCK_KEY)
    try:
        await conn.execute(sql.load("migrations_table"))
        done = await applied(conn)
        for version, name, text in shipped:
            checksum = _checksum(text)
            if version in done:
                if done[version] != checksum:
                    raise MigrationError(
                        f"migration {version:04d}_{name} was changed after it was applied "
                        f"(checksum {done[version][:12]} in the database, {checksum[:12]} "
                        "shipped); ship a new migration instead of editing an applied one"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute(sql.load("migrations_record"), version, name, checksum)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {version:04d}_{name} failed: {exc}") from exc
            done_here.append((version, name))
    finally:
        await conn.execute(sql.load("migrations_unlock"), LOCK_KEY)
    return done_here


async def migrate_dsn(dsn: str) -> list[tuple[int, str]]:
    """``migrate`` on a connection of its own."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
