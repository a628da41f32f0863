"""`wahook check` and `wahook send-test` against a real `wahook serve`, the real PostgreSQL
and moto's SQS: the exit statuses a deploy script gates on, the diagnoses, masked output."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.ops.helpers import (
    APP_SECRET,
    VERIFY_TOKEN,
    dlq_of,
    free_port,
    run,
    secrets_env,
    serving,
)
from wahook.receiver import samples


def with_password(dsn: str, password: str = "pg-Pass-4411") -> str:
    """Trust authentication ignores it: a DSN whose password must never be printed."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"postgres:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="wahook-ops-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(workdir: Path, db_dsn: str) -> Iterator[str]:
    """`wahook serve` in-process on the test database; yields the webhook URL."""
    with serving(workdir, "--dsn", db_dsn, env=secrets_env()) as url:
        yield url


def assert_masked(out: Any, *secrets: str) -> None:
    text = out.stdout + out.stderr
    for secret in (VERIFY_TOKEN, APP_SECRET, *secrets):
        assert secret not in text
    assert "Traceback" not in text


async def add_org(pool: Any, phone_number_id: str, waba_id: str) -> None:
    await pool.execute(
        "INSERT INTO organizations (name, whatsapp_business_account_id, whatsapp_phone_number_id)"
        " VALUES ('Acme', $1, $2)",
        waba_id,
        phone_number_id,
    )


@pytest.mark.slow
async def test_check_passes_and_the_sample_is_quarantined_as_test_traffic(
    server: str, db_dsn: str, pool: Any, workdir: Path
) -> None:
    dsn = with_password(db_dsn)
    out = run("check", server, "--dsn", dsn, env=secrets_env(), cwd=workdir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_masked(out, "pg-Pass-4411")
    for step in (
        "handshake      200, challenge echoed",
        "unsigned POST  401 refused",
        "signed POST    200 EVENT_RECEIVED",
        "database       connected",
        "stored         quarantined as test traffic",
    ):
        assert f"ok    {step}" in out.stdout, out.stdout
    assert "--    queue          not checked: give --queue-url" in out.stdout
    assert out.stdout.rstrip().endswith("check: 5 passed, 0 failed")
    wamid = out.stdout.split("EVENT_RECEIVED  ", 1)[1].split()[0]
    rows = await pool.fetch(
        "SELECT kind, phone_number_id, waba_id FROM quarantine "
        "WHERE position(convert_to($1, 'UTF8') in raw) > 0",
        wamid,
    )
    assert [tuple(r) for r in rows] == [
        ("test", samples.TEST_PHONE_NUMBER_ID, samples.TEST_WABA_ID)
    ]
    for table in ("messages", "incoming_messages"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0

    # Unrouted real traffic and a missing organization are named, with the fix.
    sample = run("post", "--sample", "--url", server, env=secrets_env())
    assert sample.returncode == 0, sample.stderr
    out = run(
        "check",
        server,
        "--dsn",
        db_dsn,
        "--phone-number-id",
        samples.PHONE_NUMBER_ID,
        env=secrets_env(),
    )
    assert out.returncode == 1
    assert f"FAIL  organization   {samples.PHONE_NUMBER_ID} missing" in out.stdout
    assert "--    unrouted       items wait for an organization" in out.stdout
    assert f"{samples.PHONE_NUMBER_ID}/{samples.WABA_ID}: 2" in out.stdout
    assert "fix: `wahook org add --name NAME --phone-number-id ID" in out.stdout
    await add_org(pool, samples.PHONE_NUMBER_ID, samples.WABA_ID)
    out = run(
        "check",
        server,
        "--dsn",
        db_dsn,
        "--phone-number-id",
        samples.PHONE_NUMBER_ID,
        env=secrets_env(),
    )
    assert f"ok    organization   {samples.PHONE_NUMBER_ID} is active" in out.stdout

    # An organization squatting the reserved ids fails the check.
    await add_org(pool, samples.TEST_PHONE_NUMBER_ID, samples.TEST_WABA_ID)
    out = run("check", server, "--dsn", db_dsn, env=secrets_env())
    assert out.returncode == 1
    assert "reserved test ids in use" in out.stdout


async def test_check_diagnoses_from_the_url_alone(server: str, workdir: Path) -> None:
    wrong_token = run("check", server, env=secrets_env(WEBHOOK_VERIFY_TOKEN="not-the-token"))
    assert wrong_token.returncode == 1
    assert "FAIL  handshake      403 refused" in wrong_token.stdout
    assert "webhook verification failed: the verify token sent" in wrong_token.stdout
    assert "not-the-token" not in wrong_token.stdout
    assert "ok    signed POST" in wrong_token.stdout  # the other steps still ran

    wrong_secret = run("check", server, env=secrets_env(WEBHOOK_SECRET="not-the-secret"))
    assert wrong_secret.returncode == 1
    assert "FAIL  signed POST    403 refused" in wrong_secret.stdout
    assert "signed POST refused: the app secret used here" in wrong_secret.stdout
    assert "not-the-secret" not in wrong_secret.stdout

    wrong_path = run("check", server.replace("/webhook", "/hook"), env=secrets_env())
    assert wrong_path.returncode == 1
    assert "wrong path" in wrong_path.stdout
    assert "unsigned POST" not in wrong_path.stdout  # one diagnosis, not three

    nobody = f"http://127.0.0.1:{free_port()}/webhook"
    down = run("check", nobody, env=secrets_env())
    assert down.returncode == 1
    assert "endpoint unreachable" in down.stdout
    assert "unsigned POST" not in down.stdout  # one diagnosis, not three

    db_down = run(
        "check",
        server,
        "--dsn",
        f"postgresql://u:db-Secret-90@127.0.0.1:{free_port()}/x",
        env=secrets_env(),
    )
    assert db_down.returncode == 1
    assert "database connection timeout" in db_down.stdout
    assert_masked(db_down, "db-Secret-90")

    # No verify token or app secret anywhere: a usage error, not a failed check.
    unset = run(
        "check", server, env=secrets_env(WEBHOOK_VERIFY_TOKEN="", WEBHOOK_SECRET=""), cwd=workdir
    )
    assert unset.returncode == 2
    assert "WEBHOOK_VERIFY_TOKEN" in unset.stderr


@pytest.mark.slow
async def test_check_finds_messages_stuck_in_the_queue(
    workdir: Path, db_dsn: str, sqs_client: Any, sqs_queue: Callable[..., str]
) -> None:
    queue = sqs_queue(max_receive=5)
    env = secrets_env()
    with serving(workdir, "--queue-url", queue, env=env) as url:  # no worker drains it
        out = run("check", url, "--dsn", db_dsn, "--queue-url", queue, "--wait", "1", env=env)
        assert out.returncode == 1
        assert "FAIL  stored         no row after 1 s" in out.stdout
        assert "messages stuck: the test webhook was accepted but not stored" in out.stdout
        assert "ok    queue          depth 1, in flight 0" in out.stdout

        dlq = dlq_of(sqs_client, queue)
        sqs_client.send_message(QueueUrl=dlq, MessageBody="{}")
        out = run("check", url, "--queue-url", queue, env=env)
        assert out.returncode == 1
        assert "1 messages in the dead-letter queue" in out.stdout
        assert "`wahook queue redrive`" in out.stdout


EXPECTED = {
    "status": {"webhook_events": 3},
    "incoming": {"incoming_messages": 1, "webhook_events": 1},
    "interactive": {"incoming_messages": 2, "webhook_events": 2},
    "media": {"incoming_messages": 5, "webhook_events": 5},
    "batch": {"incoming_messages": 10, "webhook_events": 30},
}


@pytest.mark.slow
async def test_send_test_every_kind_into_an_organization(
    server: str, db_dsn: str, pool: Any
) -> None:
    await add_org(pool, "106540350000001", "102290120000001")
    env = secrets_env()
    out = run("send-test", server, "--kind", "verification", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "challenge echoed" in out.stdout
    for kind, tables in EXPECTED.items():
        out = run(
            "send-test",
            server,
            "--kind",
            kind,
            "--phone-number-id",
            "106540350000001",
            "--waba-id",
            "102290120000001",
            "--dsn",
            with_password(db_dsn),
            env=env,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert_masked(out, "pg-Pass-4411")
        for table, n in tables.items():
            assert f"{table}: {n} rows" in out.stdout, (kind, out.stdout)
        assert "quarantine:" not in out.stdout
    types = await pool.fetch(
        "SELECT message_type, interactive_type, media_id IS NOT NULL AS m "
        "FROM incoming_messages ORDER BY id"
    )
    assert {r["message_type"] for r in types} == {
        "text",
        "interactive",
        "image",
        "document",
        "audio",
        "video",
        "sticker",
    }
    assert {r["interactive_type"] for r in types} >= {"button_reply", "list_reply"}
    assert sum(r["m"] for r in types) == 5

    # Twice the same kind: fresh wamids, so new rows rather than duplicates.
    again = run(
        "send-test",
        server,
        "--kind",
        "incoming",
        "--phone-number-id",
        "106540350000001",
        "--waba-id",
        "102290120000001",
        "--dsn",
        db_dsn,
        env=env,
    )
    assert again.returncode == 0
    assert await pool.fetchval("SELECT count(*) FROM incoming_messages") == 19


async def test_send_test_defaults_to_the_reserved_test_id(server: str, db_dsn: str) -> None:
    out = run("send-test", server, "--kind", "status", "--dsn", db_dsn, env=secrets_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "quarantine: 3 rows" in out.stdout
    assert f"phone_number_id={samples.TEST_PHONE_NUMBER_ID}" in out.stdout
    # Test traffic is held apart: not even an audit row.
    assert "webhook_events: 3 rows" not in out.stdout

    refused = run(
        "send-test", server, "--kind", "incoming", env=secrets_env(WEBHOOK_SECRET="x" * 8)
    )
    assert refused.returncode == 1
    assert "403" in refused.stdout
    assert "none accepted" in refused.stdout
