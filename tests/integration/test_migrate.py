"""Migrations: idempotent, safe to run concurrently, and the schema they make."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys

import asyncpg
import pytest

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


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahook.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_cli_migrate_and_stats(pg_dsn: str, db_dsn: str) -> None:
    name = f"wahook_cli_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = with_database(pg_dsn, name)
        code, out = await _cli("migrate", "--check", "--dsn", dsn)
        assert code == 1  # pending: a deploy script can gate on it
        assert "pending 0001_schema" in out
        code, out = await _cli("migrate", "--dsn", dsn)
        assert (code, "applied 0001_schema" in out) == (0, True)
        code, out = await _cli("migrate", "--dsn", dsn)
        assert (code, out.strip()) == (0, "schema is up to date")
        code, out = await _cli("migrate", "--check", "--dsn", dsn)
        assert (code, out.strip()) == (0, "schema is up to date")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    conn = await asyncpg.connect(db_dsn)
    try:
        org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        camp = await conn.fetchval(
            "INSERT INTO campaigns (organization_id, name) VALUES ($1, 'spring') RETURNING id", org
        )
        await conn.execute(
            "INSERT INTO campaign_audience (campaign_id, organization_id, phone_number,"
            " whatsapp_message_id, message_status) VALUES ($1, $2, '31', 'w1', 'read'),"
            " ($1, $2, '32', 'w2', 'failed'), ($1, $2, '33', NULL, 'pending')",
            camp,
            org,
        )
    finally:
        await conn.close()
    code, out = await _cli("stats", "--json", "--dsn", db_dsn)
    assert code == 0
    stats = json.loads(out)
    assert stats["counts"]["campaign_audience"] == 3
    [funnel] = stats["campaigns"]
    assert (funnel["audience"], funnel["sent"], funnel["delivered"], funnel["read"]) == (3, 2, 1, 1)
    assert funnel["failed"] == 1
    code, out = await _cli("stats", "--dsn", db_dsn)
    assert code == 0
    assert "spring" in out


async def test_cli_reports_a_database_it_cannot_reach(pg_dsn: str) -> None:
    code, out = await _cli("stats", "--dsn", with_database(pg_dsn, "wahook_no_such_db"))
    assert code == 1
    assert "wahook_no_such_db" in out


async def test_campaign_approval_workflow_is_enforced(pool: asyncpg.Pool) -> None:
    org = await pool.fetchval("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
    camp = await pool.fetchval(
        "INSERT INTO campaigns (organization_id, name) VALUES ($1, 'c') RETURNING id", org
    )
    move = "UPDATE campaigns SET status = $2 WHERE id = $1"
    with pytest.raises(asyncpg.CheckViolationError, match="cannot go from draft to approved"):
        await pool.execute(move, camp, "approved")
    for step in (
        "pending_approval",
        "rejected",
        "draft",
        "pending_approval",
        "approved",
        "running",
        "completed",
    ):
        await pool.execute(move, camp, step)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(move, camp, "running")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "INSERT INTO campaigns (organization_id, name, status) VALUES ($1, 'd', 'paused')", org
        )


async def test_phone_number_id_routes_to_one_organization(pool: asyncpg.Pool) -> None:
    add = "INSERT INTO organizations (name, whatsapp_phone_number_id) VALUES ($1, '1065')"
    await pool.execute(add, "a")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(add, "b")


async def test_cli_org_add_applies_what_waited_in_quarantine(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    from wahook.sinks.postgres import PostgresSink
    from wahook.testing import notification, record, text_message

    body = notification(messages=[text_message("wamid.ORGCLI1")], phone_number_id="777000")
    await PostgresSink(pool).write([record(body)])
    assert await pool.fetchval("SELECT count(*) FROM incoming_messages") == 0
    assert await pool.fetchval("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL") == 1

    code, out = await _cli("org", "add", "--dsn", db_dsn, "--name", "Late Co")
    assert code == 2  # a usage error
    assert "--phone-number-id or --waba-id" in out

    code, out = await _cli(
        "org", "add", "--dsn", db_dsn, "--name", "Late Co",
        "--phone-number-id", "777000", "--app-secret", "s3cret-value",
    )  # fmt: skip
    assert code == 0, out
    assert "quarantine replayed: 1 applied, 0 still without an organization" in out
    org = await pool.fetchval("SELECT id FROM organizations WHERE name = 'Late Co'")
    stored = "SELECT organization_id FROM incoming_messages WHERE whatsapp_message_id = $1"
    assert await pool.fetchval(stored, "wamid.ORGCLI1") == org
    assert await pool.fetchval("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL") == 0

    code, out = await _cli("org", "list", "--dsn", db_dsn)
    assert code == 0
    assert "Late Co" in out
    assert "777000" in out
    assert "s3cret-value" not in out


async def test_empty_recipients_become_absent(pool: asyncpg.Pool) -> None:
    """0006: "" stored by earlier versions as a phone number or user id becomes NULL;
    other values stay."""
    org = await pool.fetchval("INSERT INTO organizations (name) VALUES ('o') RETURNING id")
    await pool.executemany(
        "INSERT INTO messages (organization_id, whatsapp_message_id, direction, phone_number,"
        " user_id) VALUES ($1, $2, 'outbound', $3, $4)",
        [(org, "w1", "", "US.1"), (org, "w2", "3161", ""), (org, "w3", None, None)],
    )
    (text,) = [body for version, _, body in sql.migrations() if version == 6]
    await pool.execute(text)
    got = await pool.fetch(
        "SELECT whatsapp_message_id, phone_number, user_id FROM messages ORDER BY 1"
    )
    assert [tuple(r) for r in got] == [
        ("w1", None, "US.1"),
        ("w2", "3161", None),
        ("w3", None, None),
    ]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--name", "  ", "--phone-number-id", "106540352242922"], "--name must not be blank"),
        (["--name", "Acme", "--phone-number-id", "123abc"], "--phone-number-id must be Meta's"),
        (["--name", "Acme", "--waba-id", "x y"], "--waba-id must be Meta's numeric id"),
        (["--name", "Acme", "--phone-number-id", "000000000000000"], "reserved"),
    ],
)
async def test_cli_org_add_refuses_what_cannot_be_an_organization(
    db_dsn: str, pool: asyncpg.Pool, flags: list[str], says: str
) -> None:
    code, out = await _cli("org", "add", "--dsn", db_dsn, *flags)
    assert code in (1, 2), out
    assert out.count("\n") == 1, out
    assert says in out
    assert "Traceback" not in out
    assert await pool.fetchval("SELECT count(*) FROM organizations") == 0


async def test_cli_org_add_names_the_owner_of_a_duplicate_phone_number(db_dsn: str) -> None:
    args = ("org", "add", "--dsn", db_dsn, "--phone-number-id", "106540352242922")
    code, out = await _cli(*args, "--name", "First")
    assert code == 0, out
    code, out = await _cli(*args, "--name", "Second")
    assert code == 2, out
    assert out.strip() == (
        "wahook org add: phone number id 106540352242922 already belongs to organization 1"
    )
