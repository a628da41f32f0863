"""Migrations: idempotent, safe to run concurrently, and the schema they make."""

from __future__ import annotations

import asyncio
import os
import secrets

import asyncpg

from tests.plugins.postgres import with_database
from wahook.sinks import sql
from wahook.sinks.migrate import migrate, migrate_dsn, pending


async def test_template_is_fully_migrated(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await pending(conn) == []
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert {
        "organizations",
        "campaigns",
        "campaign_audience",
        "messages",
        "incoming_messages",
        "webhook_events",
        "quarantine",
        "wahook_migrations",
    } <= tables


async def test_migrate_twice_changes_nothing(db_dsn: str) -> None:
    assert await migrate_dsn(db_dsn) == []
    assert await migrate_dsn(db_dsn) == []


async def test_migrate_from_empty_concurrently(pg_dsn: str) -> None:
    # A database made without the template: ten processes' worth of migrate at once.
    name = f"wahook_mig_empty_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = with_database(pg_dsn, name)
        results = await asyncio.gather(*(migrate_dsn(dsn) for _ in range(10)))
        applied = [r for r in results if r]
        assert len(applied) == 1
        assert [v for v, _ in applied[0]] == [v for v, _, _ in sql.migrations()]
        conn = await asyncpg.connect(dsn)
        try:
            assert await migrate(conn) == []
            assert await conn.fetchval("SELECT count(*) FROM wahook_migrations") == len(
                sql.migrations()
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
