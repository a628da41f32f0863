"""``wahook replay`` as a command: files, directories, JSONL and stdin into PostgreSQL,
``--dry-run``, the summary, and idempotence on a second run."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tests.integration.test_pipeline_postgres import add_tenant, count
from wahook.sinks.postgres import add_organization
from wahook.testing import traffic_events, webhook_traffic

POISON = b"{this is not JSON"


async def replay(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wahook.cli", "replay", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "WAHOOK_LOG_FORMAT": "json"},
    )  # fmt: skip
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_inputs(tmp: Path) -> list[str]:
    bodies = list(webhook_traffic(120))
    (tmp / "dir").mkdir()
    for i, b in enumerate(bodies[:20]):
        (tmp / "dir" / f"{i:03d}.json").write_bytes(b)
    (tmp / "rest.jsonl").write_bytes(b"\n".join([*bodies[20:100], POISON]) + b"\n")
    return [str(tmp / "dir"), str(tmp / "rest.jsonl")]


async def test_replay_files_dirs_jsonl_and_stdin(db_dsn: str, pool: Any, tmp_path: Path) -> None:
    await add_tenant(pool)
    paths = write_inputs(tmp_path)
    stdin = b"\n".join(list(webhook_traffic(120))[100:]) + b"\n"
    code, out, err = await replay(
        *paths, "-", "--any-organization", "--dsn", db_dsn, "--progress", "always", stdin=stdin
    )
    assert code == 0, out + err
    assert "121 bodies" in out
    assert f"{traffic_events(120)} applied" in out
    assert "1 quarantined (1 undecodable bodies)" in out
    assert "bodies" in err  # the progress bar
    assert await count(pool, "webhook_events") == traffic_events(120)
    assert await pool.fetchval("SELECT source_message_id FROM quarantine") == (f"{paths[1]}:81")
    # Again: nothing new, everything a duplicate.
    code, out, _ = await replay(*paths, "-", "--organization", "1", "--dsn", db_dsn, stdin=stdin)
    assert code == 0
    assert f"{traffic_events(120)} duplicates" in out
    assert await count(pool, "webhook_events") == traffic_events(120)


async def test_dry_run_writes_nothing(db_dsn: str, pool: Any, tmp_path: Path) -> None:
    await add_tenant(pool)
    code, out, _ = await replay(
        *write_inputs(tmp_path), "--any-organization", "--dry-run", "--dsn", db_dsn
    )
    assert code == 0
    assert out.startswith("replay: 101 bodies")
    assert f"would store: {traffic_events(100)} applied" in out
    assert await count(pool, "webhook_events") == 0
    assert await count(pool, "quarantine") == 0


async def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await replay(str(tmp_path / "nope.jsonl"), "--any-organization", "--dry-run")
    assert code == 2
    assert "nope.jsonl" in err


async def test_drain_the_dead_letter_queue_then_replay_the_quarantine(
    db_dsn: str, pool: Any, sqs_endpoint: str, sqs_queue: Any, sqs_client: Any
) -> None:
    from tests.plugins.sqs import queue_counts, send_bodies

    dlq = sqs_queue()
    send_bodies(sqs_client, dlq, list(webhook_traffic(40)))
    # No organization yet: every event is quarantined as of an unknown tenant.
    code, out, err = await replay(
        "--dead-letter-queue", "--dlq-url", dlq, "--endpoint-url", sqs_endpoint, "--dsn", db_dsn
    )
    assert code == 0, out + err
    assert f"40 bodies, {traffic_events(40)} events" in out
    assert queue_counts(sqs_client, dlq) == (0, 0)
    assert await count(pool, "webhook_events", "organization_id IS NOT NULL") == 0

    await add_tenant(pool)
    code, out, err = await replay("--quarantine", "--dsn", db_dsn)
    assert code == 0, out + err
    assert f"quarantine: {traffic_events(40)} items applied, 0 still" in out
    assert await count(pool, "webhook_events", "organization_id IS NOT NULL") == traffic_events(40)


async def test_nothing_to_replay_is_a_usage_error() -> None:
    code, _, err = await replay("--dry-run")
    assert code == 2
    assert "nothing to replay" in err


async def test_files_need_the_operator_to_say_whose_data(tmp_path: Path) -> None:
    code, out, err = await replay(*write_inputs(tmp_path), "--dry-run")
    assert code == 2
    assert err.count("\n") == 1
    assert "--organization N" in err
    assert "--any-organization" in err
    assert out == ""


async def test_files_for_one_organization_never_write_another(
    db_dsn: str, pool: Any, tmp_path: Path
) -> None:
    traffic_org = await add_tenant(pool)
    other = await add_organization(pool, name="Other", phone_number_id="999", waba_id="998")
    paths = write_inputs(tmp_path)
    code, out, err = await replay(*paths, "--organization", str(other), "--dsn", db_dsn)
    assert code == 0, out + err
    assert f"0 applied, {traffic_events(100) + 1} quarantined" in out
    assert await count(pool, "webhook_events") == 0
    assert await count(pool, "messages") == 0
    assert await count(pool, "quarantine", "kind = 'forged'") == traffic_events(100)
    reason = await pool.fetchval("SELECT reason FROM quarantine WHERE kind = 'forged' LIMIT 1")
    assert f"organization {traffic_org} " in reason
    # Replaying the quarantine never applies forged items.
    code, out, err = await replay("--quarantine", "--any-organization", "--dsn", db_dsn)
    assert code == 0, out + err
    assert await count(pool, "webhook_events") == 0
    # The positive control: the same files as the traffic organization's are stored.
    code, out, err = await replay(*paths, "--organization", str(traffic_org), "--dsn", db_dsn)
    assert code == 0, out + err
    assert await count(pool, "webhook_events") == traffic_events(100)


async def test_dead_letters_without_a_verdict_wait_for_the_operator(
    db_dsn: str, pool: Any, sqs_endpoint: str, sqs_queue: Any, sqs_client: Any
) -> None:
    from tests.plugins.sqs import send_bodies

    org = await add_tenant(pool)
    dlq = sqs_queue()
    send_bodies(sqs_client, dlq, list(webhook_traffic(10)), verdict=None)  # queued before
    args = ("--dlq-url", dlq, "--endpoint-url", sqs_endpoint, "--dsn", db_dsn)
    code, out, err = await replay("--dead-letter-queue", *args)
    assert code == 0, out + err
    assert await count(pool, "webhook_events") == 0
    assert await count(pool, "quarantine", "kind = 'unverified'") == traffic_events(10)
    code, out, err = await replay("--quarantine", "--dsn", db_dsn)
    assert code == 0, out + err
    assert f"{traffic_events(10)} without a verdict" in out
    assert await count(pool, "webhook_events") == 0
    code, out, err = await replay("--quarantine", "--organization", str(org), "--dsn", db_dsn)
    assert code == 0, out + err
    assert f"quarantine: {traffic_events(10)} items applied" in out
    assert await count(pool, "webhook_events", f"organization_id = {org}") == traffic_events(10)
    assert await count(pool, "quarantine", "resolved_at IS NULL") == 0
