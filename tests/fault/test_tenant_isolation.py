"""Tenant isolation, tested as an attacker would try it: a body signed with organization A's
app secret that names organization B in every way the envelope allows. A's items are stored,
B's forged items are quarantined with their raw bytes, B's rows do not change; through the
sink, `wahook serve`, the Lambda receiver → SQS → `wahook worker` and the processor Lambda.

Each path has its positive control (the same body signed with B's secret, or the
deployment-wide secret, does change B's rows), so a test that refuses everything fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.test_worker_subprocess import worker
from tests.plugins.sqs import REGION, _free_port
from wahook.parse import decode, sign
from wahook.receiver.core import Accepted, Receiver, Request
from wahook.receiver.credentials import OrgCredentials
from wahook.receiver.lambda_handler import LambdaReceiver
from wahook.runtime.lambda_sqs import make_handler
from wahook.runtime.pipeline import to_record
from wahook.runtime.source import Message
from wahook.settings import Settings
from wahook.sinks.postgres import Outbound, PostgresSink, add_organization, record_outbound
from wahook.sinks.queries import organization_secrets
from wahook.verdict import ANY, Verdict

A_PHONE, A_WABA, B_PHONE, B_WABA = "1110001", "1110009", "2220001", "2220009"
SECRET_A, SECRET_B, DEPLOYMENT = "secret-of-a-3c1f", "secret-of-b-9e2d", "deployment-77aa"
CUSTOMER = "16505550100"
B_SENT = "wamid.B-OUTBOUND-1"  # B's campaign message, delivered before the attack


def status(wamid: str, value: str, ts: int) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": value, "timestamp": str(ts),
                            "recipient_id": CUSTOMER}  # fmt: skip
    if value == "failed":
        item["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
    return item


def reply(wamid: str, to: str) -> dict[str, Any]:
    return {"from": CUSTOMER, "id": wamid, "timestamp": "1749416400", "type": "text",
            "text": {"body": "STOP"}, "context": {"from": "15550001", "id": to}}  # fmt: skip


def change(
    phone: str, *, statuses: Sequence[Any] = (), messages: Sequence[Any] = ()
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001", "phone_number_id": phone},
    }
    if messages:
        value["contacts"] = [{"profile": {"name": "Mallory"}, "wa_id": CUSTOMER}]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {"field": "messages", "value": value}


def entry(waba: str, *changes: dict[str, Any]) -> dict[str, Any]:
    return {"id": waba, "changes": list(changes)}


def body(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": list(entries)}).encode()


def forged(name: str) -> dict[str, list[Any]]:
    """B's items an attacker would forge: a 'failed' for B's delivered message, and a
    reply to it."""
    return {"statuses": [status(B_SENT, "failed", 1749416500)],
            "messages": [reply(f"wamid.FORGED-{name}", B_SENT)]}  # fmt: skip


def genuine_a(name: str) -> dict[str, Any]:
    return change(A_PHONE, statuses=[status(f"wamid.A-{name}", "sent", 1749416300)])


def variants() -> dict[str, bytes]:
    dup = body(entry(A_WABA, change("DUPLICATED", **forged("dup")), genuine_a("dup")))
    dup = dup.replace(
        b'"phone_number_id": "DUPLICATED"',
        f'"phone_number_id": "{A_PHONE}", "phone_number_id": "{B_PHONE}"'.encode(),
    )
    return {
        # A's WABA as entry.id, B's phone number id in metadata.
        "a-waba-b-phone": body(entry(A_WABA, change(B_PHONE, **forged("waba")), genuine_a("waba"))),
        # An empty entry for A, then an entry for B.
        "empty-a-then-b": body(
            entry(A_WABA),
            entry(B_WABA, change(B_PHONE, **forged("empty"))),
            entry(A_WABA, genuine_a("empty")),
        ),
        # A's entry with a second change carrying B's phone number id.
        "second-change": body(
            entry(A_WABA, genuine_a("second"), change(B_PHONE, **forged("second")))
        ),
        # A duplicated phone_number_id key: A's, then B's (the last wins).
        "duplicate-key": dup,
    }


VARIANTS = variants()


# --- the database -------------------------------------------------------------------------


async def setup_tenants(conn: Any) -> tuple[int, int]:
    """Organizations A and B with their own app secrets; B has a campaign message that a
    genuine status (signed by B) marked delivered."""
    a = await add_organization(conn, name="A", phone_number_id=A_PHONE, waba_id=A_WABA,
                               app_secret=SECRET_A)  # fmt: skip
    b = await add_organization(conn, name="B", phone_number_id=B_PHONE, waba_id=B_WABA,
                               app_secret=SECRET_B)  # fmt: skip
    await record_outbound(conn, Outbound(organization_id=b, wamid=B_SENT, recipient=CUSTOMER))
    return a, b


B_TABLES = ("messages", "incoming_messages", "campaign_audience", "webhook_events")


async def b_rows(conn: Any, b: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of organization B (table names are this module's constants)."""
    out = {}
    for table in B_TABLES:
        rows = await conn.fetch(
            f"SELECT * FROM {table} WHERE organization_id = $1 ORDER BY 1", b
        )  # fmt: skip
        out[table] = [{k: v for k, v in r.items() if k not in ("processed_at", "updated_at")}
                      for r in rows]  # fmt: skip
    return out


def forged_items(raw_body: bytes) -> list[bytes]:
    """The raw bytes of the body's items that name B (by phone number, the router's way)."""
    return [bytes(ev.raw) for ev in decode(raw_body).events() if ev.phone_number_id == B_PHONE]


async def assert_isolated(conn: Any, name: str, raw_body: bytes, b: int, before: Any) -> None:
    a_status = await conn.fetchval(
        "SELECT message_status FROM messages m JOIN organizations o"
        " ON o.id = m.organization_id WHERE o.name = 'A' AND whatsapp_message_id = $1",
        f"wamid.A-{_a_key(name)}",
    )
    assert a_status == "sent", f"{name}: A's own item was not stored"
    assert await b_rows(conn, b) == before, f"{name}: B's rows changed"
    held = await conn.fetch(
        "SELECT raw, reason FROM quarantine WHERE kind = 'forged' AND resolved_at IS NULL"
    )
    held_raw = {bytes(r["raw"]) for r in held}
    expected = forged_items(raw_body)
    assert len(expected) == 2
    assert set(expected) <= held_raw, f"{name}: forged items not quarantined with raw bytes"
    assert all(f"organization {b} " in r["reason"] for r in held)


def _a_key(name: str) -> str:
    return {"a-waba-b-phone": "waba", "empty-a-then-b": "empty", "second-change": "second",
            "duplicate-key": "dup"}[name]  # fmt: skip


@pytest.fixture
def tenants(db_dsn: str) -> tuple[int, int]:
    ids: tuple[int, int] = db(db_dsn, setup_tenants)
    return ids


def db(dsn: str, fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


# --- the sink, with the receiver's own verdict ---------------------------------------------


async def receive_and_write(pool: Any, raw_body: bytes, secret: str) -> Verdict:
    creds = OrgCredentials(lambda: organization_secrets(pool))
    await creds.refresh(force=True)
    rx = Receiver(app_secrets=(DEPLOYMENT,), credentials=creds)
    headers = {"x-hub-signature-256": sign(raw_body, secret)}
    accepted = rx.handle(Request("POST", "/webhook", {}, headers, raw_body))
    assert isinstance(accepted, Accepted), accepted
    record = to_record(Message(id=f"m-{secret}", body=raw_body, verdict=accepted.verdict))
    result = await PostgresSink(pool).write([record])
    assert result.failed == {}
    return accepted.verdict


@pytest.mark.parametrize("name", list(VARIANTS))
async def test_sink_stores_only_what_the_signer_may_write(pool: Any, name: str) -> None:
    a, b = await setup_tenants(pool)
    raw_body = VARIANTS[name]
    async with pool.acquire() as conn:
        before = await b_rows(conn, b)
        assert await receive_and_write(pool, raw_body, SECRET_A) == Verdict.of({a})
        await assert_isolated(conn, name, raw_body, b, before)
        # Positive control: signed by B, B's forged-looking items are B's own and apply.
        assert await receive_and_write(pool, raw_body, SECRET_B) == Verdict.of({b})
        after = await b_rows(conn, b)
        assert after != before
        status_now = await conn.fetchval(
            "SELECT message_status FROM messages WHERE organization_id = $1"
            " AND whatsapp_message_id = $2", b, B_SENT)  # fmt: skip
        assert status_now == "failed"


async def test_deployment_wide_secret_may_write_every_tenant(pool: Any) -> None:
    _, b = await setup_tenants(pool)
    raw_body = VARIANTS["second-change"]
    assert await receive_and_write(pool, raw_body, DEPLOYMENT) == ANY
    assert await pool.fetchval("SELECT count(*) FROM quarantine") == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM incoming_messages WHERE organization_id = $1", b)
        == 1
    )


async def test_a_secret_shared_by_two_organizations_writes_both(pool: Any) -> None:
    a = await add_organization(pool, name="A", phone_number_id=A_PHONE, waba_id=A_WABA,
                               app_secret=SECRET_A)  # fmt: skip
    b = await add_organization(pool, name="B", phone_number_id=B_PHONE, waba_id=B_WABA,
                               app_secret=SECRET_A)  # one Meta app for both  # fmt: skip
    assert await receive_and_write(pool, VARIANTS["second-change"], SECRET_A) == Verdict.of({a, b})
    assert await pool.fetchval("SELECT count(*) FROM quarantine") == 0


async def test_unknown_tenant_under_a_restricted_verdict_never_replays_elsewhere(
    pool: Any,
) -> None:
    """A's secret naming a phone number no organization has yet: held as ``tenant`` with
    A's verdict, writing no audit row; once that number's organization exists (another
    tenant), replay does not apply it."""
    a = await add_organization(pool, name="A", phone_number_id=A_PHONE, waba_id=A_WABA,
                               app_secret=SECRET_A)  # fmt: skip
    raw_body = body(entry(B_WABA, change(B_PHONE, **forged("later"))),
                    entry(A_WABA, genuine_a("later")))  # fmt: skip
    assert await receive_and_write(pool, raw_body, SECRET_A) == Verdict.of({a})
    assert (
        await pool.fetchval("SELECT count(*) FROM webhook_events WHERE organization_id IS NULL")
        == 0
    )
    held = await pool.fetch("SELECT kind, verdict FROM quarantine")
    assert {(r["kind"], r["verdict"]) for r in held} == {("tenant", str(a))}
    await add_organization(pool, name="B", phone_number_id=B_PHONE, waba_id=B_WABA)
    done = await PostgresSink(pool).replay_quarantine()
    assert (done.applied, done.refused) == (0, 2)
    assert await pool.fetchval("SELECT count(*) FROM incoming_messages") == 0


# --- wahook serve (in-process pipeline) ------------------------------------------------------


def post(url: str, raw_body: bytes, secret: str) -> int:
    headers = {"X-Hub-Signature-256": sign(raw_body, secret), "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=raw_body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def serve(db_dsn: str, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WAHOOK_", "DB_", "WEBHOOK_", "SQS_"))}  # fmt: skip
    env.update(WEBHOOK_SECRET=DEPLOYMENT, WEBHOOK_VERIFY_TOKEN="tok", WAHOOK_LOG_FORMAT="json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wahook.cli", "serve", "--dsn", db_dsn, "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"serve did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield url + "/webhook"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_serve_in_process_path(db_dsn: str, tenants: tuple[int, int], serve: str) -> None:
    _, b = tenants
    before = db(db_dsn, lambda c: b_rows(c, b))
    for raw_body in VARIANTS.values():
        assert post(serve, raw_body, SECRET_A) == 200
    assert post(serve, VARIANTS["second-change"], "not-any-secret") == 403
    for name, raw_body in VARIANTS.items():
        db(db_dsn, lambda c, n=name, r=raw_body: assert_isolated(c, n, r, b, before))
    # Positive control: B's own signature writes B's rows through the same server.
    assert post(serve, VARIANTS["second-change"], SECRET_B) == 200
    assert db(db_dsn, lambda c: b_rows(c, b)) != before


# --- Lambda receiver → SQS → `wahook worker` and the processor Lambda ------------------------


def receiver(dsn: str, endpoint: str, queue_url: str) -> LambdaReceiver:
    return LambdaReceiver(Settings(
        app_secrets=(DEPLOYMENT,), queue_url=queue_url, aws_region=REGION,
        aws_endpoint_url=endpoint, dsn=dsn,
    ))  # fmt: skip


def api_event(raw_body: bytes, secret: str) -> dict[str, Any]:
    return {
        "version": "2.0", "rawPath": "/webhook", "rawQueryString": "",
        "headers": {"x-hub-signature-256": sign(raw_body, secret)},
        "requestContext": {"http": {"method": "POST", "path": "/webhook"}},
        "body": base64.b64encode(raw_body).decode(), "isBase64Encoded": True,
    }  # fmt: skip


def drain_as_lambda_records(client: Any, url: str) -> list[dict[str, Any]]:
    """The queue's messages, received and deleted, in the shape of an SQS event's records."""
    records: list[dict[str, Any]] = []
    while True:
        got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                     MessageAttributeNames=["All"]).get("Messages", [])  # fmt: skip
        if not got:
            return records
        for m in got:
            attributes = {
                k: {"stringValue": v["StringValue"], "dataType": v["DataType"]}
                for k, v in m.get("MessageAttributes", {}).items()
            }
            records.append({
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": attributes, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:wahook",
            })  # fmt: skip
        handles = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        client.delete_message_batch(QueueUrl=url, Entries=handles)


class Context:
    function_name = "processor"
    aws_request_id = "req-tenancy"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_lambda_receiver_then_processor_lambda(
    db_dsn: str, tenants: tuple[int, int], sqs_endpoint: str, sqs_queue: Any, sqs_client: Any
) -> None:
    a, b = tenants
    url = sqs_queue()
    rx = receiver(db_dsn, sqs_endpoint, url)
    before = db(db_dsn, lambda c: b_rows(c, b))
    for raw_body in VARIANTS.values():
        assert rx(api_event(raw_body, SECRET_A), None)["statusCode"] == 200
    assert rx(api_event(VARIANTS["second-change"], "nope"), None)["statusCode"] == 403
    records = drain_as_lambda_records(sqs_client, url)
    assert {r["messageAttributes"]["verdict"]["stringValue"] for r in records} == {str(a)}
    handler = make_handler(Settings(dsn=db_dsn))
    try:
        assert handler({"Records": records}, Context()) == {"batchItemFailures": []}
        for name, raw_body in VARIANTS.items():
            db(db_dsn, lambda c, n=name, r=raw_body: assert_isolated(c, n, r, b, before))
        # Positive control: signed by B, through the same two Lambdas, B's rows change.
        assert rx(api_event(VARIANTS["second-change"], SECRET_B), None)["statusCode"] == 200
        records = drain_as_lambda_records(sqs_client, url)
        assert handler({"Records": records}, Context()) == {"batchItemFailures": []}
        assert db(db_dsn, lambda c: b_rows(c, b)) != before
    finally:
        handler.close()


def test_lambda_receiver_then_worker(
    db_dsn: str, tenants: tuple[int, int], sqs_endpoint: str, sqs_queue: Any
) -> None:
    a, b = tenants
    url = sqs_queue()
    rx = receiver(db_dsn, sqs_endpoint, url)
    before = db(db_dsn, lambda c: b_rows(c, b))
    for raw_body in VARIANTS.values():
        assert rx(api_event(raw_body, SECRET_A), None)["statusCode"] == 200

    async def consume() -> None:
        conn = await asyncpg.connect(db_dsn)
        try:
            async with worker(url, sqs_endpoint, db_dsn, "--log-level", "debug") as w:
                stored = "SELECT count(*) FROM messages WHERE organization_id = $1"
                async with asyncio.timeout(120):
                    # Polling the database: no event says "all committed".
                    while await conn.fetchval(stored, a) < len(VARIANTS):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                assert await w.stop() == 0
            for name, raw_body in VARIANTS.items():
                await assert_isolated(conn, name, raw_body, b, before)
        finally:
            await conn.close()

    asyncio.run(consume())


# --- test traffic ----------------------------------------------------------------------------


async def test_test_traffic_is_held_apart_whoever_signed_it(pool: Any) -> None:
    """`wahook check` samples (the reserved test ids) never reach a tenant's rows, not even
    under the deployment-wide verdict; the in-memory model holds the same rows."""
    from wahook.errors import ConfigError
    from wahook.reserved import TEST_PHONE_NUMBER_ID, TEST_WABA_ID
    from wahook.testing import MemorySink, dump_tables

    await add_organization(pool, name="A", phone_number_id=A_PHONE, waba_id=A_WABA)
    with pytest.raises(ConfigError):
        await add_organization(pool, name="T", phone_number_id=TEST_PHONE_NUMBER_ID)
    raw_body = body(
        entry(TEST_WABA_ID, change(TEST_PHONE_NUMBER_ID, **forged("check"))),
        entry(A_WABA, genuine_a("check")),
    )
    memory = MemorySink()
    memory.add_organization(1, phone_number_id=A_PHONE, waba_id=A_WABA)
    for verdict in (ANY, Verdict.of({1})):
        record = to_record(Message(id="check-1", body=raw_body, verdict=verdict))
        assert (await PostgresSink(pool).write([record])).failed == {}
        await memory.write([record])
    held = await pool.fetch("SELECT kind, phone_number_id, raw FROM quarantine")
    assert {(r["kind"], r["phone_number_id"]) for r in held} == {("test", TEST_PHONE_NUMBER_ID)}
    assert len(held) == 2
    assert await pool.fetchval("SELECT count(*) FROM incoming_messages") == 0
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1  # A's own status
    got = await dump_tables(pool)
    assert got["quarantine"] == memory.dump()["quarantine"]
