"""The schema-migration custom resource, run as CloudFormation runs it: an event in, the
answer PUT to a (loopback) response URL, a real PostgreSQL database migrated.

moto runs custom-resource functions only in Docker, so the stack test leaves this resource
out (MigrateSchema=false) and it is tested here directly."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from tests.plugins.postgres import with_database
from tests.plugins.sqs import _free_port
from wahook.deploy import migrate_resource
from wahook.sinks import sql
from wahook.sinks.migrate import LOCK_KEY

SHIPPED = ",".join(f"{v:04d}_{name}" for v, name, _ in sql.migrations())
NEWEST = f"{sql.migrations()[-1][0]:04d}"


class Answers:
    """A loopback stand-in for the presigned S3 URL CloudFormation hands out."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        answers = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answers.received.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(body),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def answers() -> Iterator[Answers]:
    a = Answers()
    thread = threading.Thread(target=a.server.serve_forever, daemon=True)
    thread.start()
    yield a
    a.server.shutdown()
    a.server.server_close()


@pytest.fixture
def empty_db(pg_dsn: str) -> Iterator[str]:
    """A database with no schema at all (the per-test databases come migrated)."""
    name = f"wahook_t_{os.getpid()}_mr_{secrets.token_hex(3)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield with_database(pg_dsn, name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def dsn_secret(
    aws_client: Callable[[str], Any], sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], None]:
    """``dsn_secret(dsn)``: the function's environment as the template sets it, the DSN in
    moto's Secrets Manager."""
    client = aws_client("secretsmanager")

    def put(dsn: str) -> None:
        arn = client.create_secret(Name=f"wahook-mr-{secrets.token_hex(4)}", SecretString=dsn)
        monkeypatch.delenv("WAHOOK_DSN", raising=False)
        monkeypatch.setenv("WAHOOK_DSN_SECRET_ARN", arn["ARN"])
        monkeypatch.setenv("AWS_ENDPOINT_URL", sqs_endpoint)

    return put


class Context:
    def __init__(self, remaining_ms: int = 300_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def event(answers: Answers, request: str, physical_id: str | None = None) -> dict[str, Any]:
    e = {
        "RequestType": request,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:wh-migrate",
        "ResponseURL": f"{answers.url}/cloudformation-custom-resource-response?X-Amz-Signature=x",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/wh/0f00",
        "RequestId": f"req-{secrets.token_hex(4)}",
        "ResourceType": "Custom::WahookSchema",
        "LogicalResourceId": "Schema",
        "ResourceProperties": {"ServiceToken": "...", "CodeVersion": "arn:...:1"},
    }
    if physical_id:
        e["PhysicalResourceId"] = physical_id
    return e


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


def tables(dsn: str) -> set[str]:
    return asyncio.run(_tables(dsn))


def test_create_migrates_update_finds_nothing_delete_keeps_the_data(
    answers: Answers, empty_db: str, dsn_secret: Callable[[str], None]
) -> None:
    dsn_secret(empty_db)
    assert tables(empty_db) == set()
    create = event(answers, "Create")
    migrate_resource.handler(create, Context())
    [put] = answers.received
    assert put["path"].startswith("/cloudformation-custom-resource-response?")
    assert put["content_type"] == ""  # what a presigned S3 PUT was signed with
    assert put["body"] == {
        "Status": "SUCCESS",
        "Reason": f"applied: {SHIPPED}",
        "PhysicalResourceId": "wahook-schema",
        "StackId": create["StackId"],
        "RequestId": create["RequestId"],
        "LogicalResourceId": "Schema",
        "NoEcho": False,
        "Data": {"SchemaVersion": NEWEST, "Applied": SHIPPED},
    }
    assert {"organizations", "messages", "webhook_events", "wahook_migrations"} <= tables(empty_db)

    migrate_resource.handler(event(answers, "Update", "wahook-schema"), Context())
    update = answers.received[1]["body"]
    assert update["Status"] == "SUCCESS"
    assert update["Data"] == {"SchemaVersion": NEWEST, "Applied": "none"}
    assert update["Reason"] == "applied: nothing, up to date"

    migrate_resource.handler(event(answers, "Delete", "wahook-schema"), Context())
    delete = answers.received[2]["body"]
    assert (delete["Status"], delete["PhysicalResourceId"]) == ("SUCCESS", "wahook-schema")
    assert "wahook_migrations" in tables(empty_db)


def test_an_unreachable_database_fails_the_deploy_without_its_password(
    answers: Answers, dsn_secret: Callable[[str], None]
) -> None:
    dsn_secret(f"postgresql://wahook:pw-Zq81x@127.0.0.1:{_free_port()}/nowhere")
    migrate_resource.handler(event(answers, "Create"), Context())
    [put] = answers.received
    assert put["body"]["Status"] == "FAILED"
    assert put["body"]["Reason"].startswith(("ConnectionRefusedError", "OSError"))
    assert "pw-Zq81x" not in json.dumps(put["body"])


def test_a_migration_that_cannot_finish_in_time_is_answered_failed(
    answers: Answers, empty_db: str, dsn_secret: Callable[[str], None]
) -> None:
    # Another migrator holds the lock: the handler must answer before the function's
    # timeout (remaining time less ANSWER_MS), not leave CloudFormation waiting an hour.
    dsn_secret(empty_db)

    async def run_while_locked() -> None:
        holder = await asyncpg.connect(empty_db)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
            context = Context(remaining_ms=migrate_resource.ANSWER_MS + 1000)
            await asyncio.to_thread(migrate_resource.handler, event(answers, "Create"), context)
        finally:
            await holder.close()

    asyncio.run(run_while_locked())
    [put] = answers.received
    assert put["body"]["Status"] == "FAILED"
    assert "did not finish" in put["body"]["Reason"]
    assert tables(empty_db) == set()


def test_no_database_configured_and_unknown_requests_are_failed(
    answers: Answers, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WAHOOK_DSN", "WAHOOK_DSN_SECRET_ARN", "WAHOOK_DSN_SSM", "DB_HOST"):
        monkeypatch.delenv(name, raising=False)
    migrate_resource.handler(event(answers, "Create"), Context())
    migrate_resource.handler(event(answers, "Rollback"), None)
    first, second = (a["body"] for a in answers.received)
    assert (first["Status"], second["Status"]) == ("FAILED", "FAILED")
    assert "no database" in first["Reason"]
    assert "unknown RequestType 'Rollback'" in second["Reason"]
