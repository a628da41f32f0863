"""Hostile bodies through a running ``wahook serve`` (in-process pipeline, real PostgreSQL)
and a running ``wahook worker`` (moto's SQS): the process stays up and keeps answering, the
valid siblings of every poison item are stored, each poison item is quarantined with its
exact bytes (issue 11, defects 2, 3 and 11, "hostile bodies" of its suite).

Bodies are signed with the deployment-wide secret (``WEBHOOK_SECRET``), so these tests do
not depend on the per-organization tenancy rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.integration.test_receiver_cli import read_banner
from tests.integration.test_worker_subprocess import worker
from tests.plugins.sqs import _free_port, send_bodies
from wahook.parse import sign
from wahook.sinks.postgres import add_organization

SECRET = "deployment-wide-app-secret"
PNID = "106540352242922"
WABA = "102290129340398"
WAHOOK = str(Path(sys.executable).with_name("wahook"))
HANG_GUARD = 120  # seconds: only so a broken process cannot hang the suite
META = '"metadata":{"display_phone_number":"15550001111","phone_number_id":"' + PNID + '"}'


def status(wamid: str, extra: str = "") -> str:
    return '{"id":"' + wamid + '","status":"sent","timestamp":"1749416383"' + extra + "}"


def message(wamid: str, text: str = '"hi"') -> str:
    return (
        '{"from":"16505551234","id":"' + wamid + '","timestamp":"1749416383","type":"text",'
        '"text":{"body":' + text + "}}"
    )


def body(
    items: str, key: str = "statuses", meta: str = META, entry_id: str = '"' + WABA + '"'
) -> bytes:
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":' + entry_id + ',"changes":[{'
        '"field":"messages","value":{"messaging_product":"whatsapp",' + meta + ',"' + key
        + '":[' + items + "]}}]}]}"
    ).encode()  # fmt: skip


# Each case: a body, the wamids that must be stored, and the exact bytes that must be in
# the quarantine (the poison items; items with lone surrogates are *not* poison: they are
# stored as events).
POISON_STATUS = '{"status":"sent","\\ud800":1}'  # no id, and a lone surrogate key
POISON_NUMBER = '{"id":"wamid.NUM","status":"sent","timestamp":1e999}'
CASES: list[tuple[str, bytes, set[str], set[bytes]]] = [
    ("surrogate key in a status (defect 2)",
     body(",".join([status("wamid.A1"), status("wamid.A2", ',"\\ud800":1'), status("wamid.A3")])),
     {"wamid.A1", "wamid.A2", "wamid.A3"}, set()),
    ("surrogate key in metadata (defect 2)",
     body(status("wamid.B1"), meta=META[:-1] + ',"\\udc00":1}'), {"wamid.B1"}, set()),
    ("surrogate in a text value (defect 3)",
     body(",".join([message("wamid.C1", '"half \\ud83d"'), message("wamid.C2")]), key="messages"),
     {"wamid.C1", "wamid.C2"}, set()),
    ("poison items among valid siblings",
     body(",".join([status("wamid.D1"), POISON_STATUS, POISON_NUMBER, '"text"',
                    status("wamid.D2")])),
     {"wamid.D1", "wamid.D2"}, {POISON_STATUS.encode(), POISON_NUMBER.encode(), b'"text"'}),
    ("entry with a null id (defect 11)",
     body(message("wamid.E1"), key="messages", entry_id="null"), {"wamid.E1"}, {b'{"id":null}'}),
    ("deep nesting and duplicated keys in one item",
     body(",".join([status("wamid.F1", ',"x":' + "[" * 150 + "]" * 150),
                    status("wamid.F2", ',"id":"wamid.F3"')])),
     {"wamid.F1", "wamid.F3"}, set()),
]  # fmt: skip
INNOCENT = [body(status(f"wamid.OK{k}")) for k in range(14)]


def stored(expected: set[str]) -> str:
    return "SELECT count(DISTINCT whatsapp_message_id) FROM webhook_events WHERE " \
        "whatsapp_message_id = ANY($1::text[])"  # fmt: skip


async def wait_stored(pool: asyncpg.Pool, wamids: set[str], raws: set[bytes]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            found = await pool.fetchval(stored(wamids), sorted(wamids))
            kept = {bytes(r["raw"]) for r in await pool.fetch("SELECT raw FROM quarantine")}
            if found == len(wamids) and raws <= kept:
                return
            await asyncio.sleep(0.2)


async def check_store(pool: asyncpg.Pool) -> None:
    wamids = {w for _, _, ws, _ in CASES for w in ws} | {f"wamid.OK{k}" for k in range(14)}
    raws = {r for _, _, _, rs in CASES for r in rs}
    await wait_stored(pool, wamids, raws)
    poison = await pool.fetch("SELECT kind, raw, reason FROM quarantine WHERE kind = 'poison'")
    assert poison == []  # no body was set aside whole
    # The stored siblings are applied to the organization, not left unrouted.
    routed = await pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE organization_id IS NULL "
        "AND whatsapp_message_id = ANY($1::text[])", sorted(wamids),
    )  # fmt: skip
    assert routed == 0


@pytest.fixture
def serve(db_dsn: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAHOOK_", "WEBHOOK_"))}
    env.update(WEBHOOK_SECRET=SECRET, WEBHOOK_VERIFY_TOKEN="verify-me")
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [WAHOOK, "serve", "--port", str(port), "--dsn", db_dsn, "--grace", "10"],
            env=env, stdout=subprocess.PIPE, stderr=log, bufsize=0,
        )  # fmt: skip
    try:
        read_banner(proc)
        yield f"http://127.0.0.1:{port}/webhook", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


async def post(session: aiohttp.ClientSession, url: str, data: bytes) -> int:
    headers = {"X-Hub-Signature-256": sign(data, SECRET), "Content-Type": "application/json"}
    async with session.post(url, data=data, headers=headers) as r:
        return r.status


@pytest.mark.slow
async def test_serve_stays_up_and_stores_the_siblings(
    serve: tuple[str, subprocess.Popen[bytes]], pool: asyncpg.Pool
) -> None:
    url, proc = serve
    await add_organization(pool, name="acme", phone_number_id=PNID, waba_id=WABA)
    hostile = [b for _, b, _, _ in CASES]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HANG_GUARD)) as s:
        # Hostile and innocent bodies at once, as Meta sends them: none may fail another.
        codes = await asyncio.gather(*(post(s, url, b) for b in [*hostile, *INNOCENT]))
        assert codes == [200] * len(codes)
        assert proc.poll() is None
        # ... and it keeps answering afterwards.
        assert await post(s, url, body(status("wamid.AFTER"))) == 200
    await check_store(pool)
    assert await pool.fetchval(stored({"wamid.AFTER"}), ["wamid.AFTER"]) == 1
    assert proc.poll() is None


@pytest.mark.slow
async def test_worker_stays_up_and_stores_the_siblings(
    db_dsn: str, pool: Any, sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any
) -> None:
    await add_organization(pool, name="acme", phone_number_id=PNID, waba_id=WABA)
    url = sqs_queue(visibility_timeout=60, max_receive=2)
    bodies = [b for _, b, _, _ in CASES]
    # Innocent bodies on both sides of the hostile ones, so they share receive batches.
    send_bodies(sqs_client, url, INNOCENT[:7] + bodies + INNOCENT[7:])
    async with worker(url, sqs_endpoint, db_dsn, "--grace", "10", "--batch-size", "10") as w:
        await check_store(pool)
        assert w.proc.returncode is None
        assert "pipeline_failed" not in w.names()
        code = await w.stop()
    assert code == 0, "".join(w.lines)
    dead = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])[
        "Attributes"
    ]["RedrivePolicy"]
    dlq_arn = json.loads(dead)["deadLetterTargetArn"]
    dlq_url = sqs_client.get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[1])["QueueUrl"]
    assert (
        sqs_client.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        == "0"
    )  # nothing dead-lettered
