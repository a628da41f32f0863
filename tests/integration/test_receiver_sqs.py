"""Forwarding into SQS (moto's server on 127.0.0.1): the Lambda handler and `wahook serve`."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from tests.plugins.sqs import REGION
from wahook.parse import decode, sign
from wahook.receiver import samples
from wahook.receiver.envelope import summarize
from wahook.receiver.lambda_handler import LambdaReceiver
from wahook.receiver.serve import Server
from wahook.settings import Settings

TOKEN = "sqs-token-12ab"
SECRET = "sqs-secret-34cd"


def settings(endpoint: str, queue_url: str, **kw: Any) -> Settings:
    return Settings(
        verify_token=TOKEN,
        app_secrets=(SECRET,),
        queue_url=queue_url,
        aws_region=REGION,
        aws_endpoint_url=endpoint,
    ).replace(**kw)


def drain(client: Any, url: str) -> list[dict[str, Any]]:
    """Every message in the queue (received and deleted)."""
    out: list[dict[str, Any]] = []
    while True:
        got = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])  # fmt: skip
        if not got:
            return out
        out += got
        client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )


def attrs(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


def part_number(message: dict[str, Any]) -> int:
    return int(attrs(message)["part"].split("/")[0])


def events(*bodies: bytes) -> list[Any]:
    return [msgspec.structs.replace(e, path="") for b in bodies for e in decode(b).events()]


def api_gateway(body: bytes, *, b64: bool, signature: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/webhook",
        "rawQueryString": "",
        "headers": {"x-hub-signature-256": signature, "content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/webhook"}},
        "body": base64.b64encode(body).decode() if b64 else body.decode(),
        "isBase64Encoded": b64,
    }


def rest(body: bytes, signature: str) -> dict[str, Any]:
    return {
        "httpMethod": "POST",
        "path": "/webhook",
        "headers": {"X-Hub-Signature-256": signature},
        "queryStringParameters": None,
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_lambda_forwards_body_and_attributes(
    sqs_endpoint: str, sqs_queue: Any, sqs_client: Any
) -> None:
    url = sqs_queue()
    rx = LambdaReceiver(settings(sqs_endpoint, url))
    body = samples.sample(messages=3, statuses=2)
    result = rx(api_gateway(body, b64=True, signature=sign(body, SECRET)), None)
    assert result["statusCode"] == 200
    [message] = drain(sqs_client, url)
    assert message["Body"].encode() == body
    a = attrs(message)
    assert a["body_sha256"] == summarize(body).sha256
    assert (a["waba_id"], a["phone_number_id"], a["field"]) == (
        samples.WABA_ID, samples.PHONE_NUMBER_ID, "messages",
    )  # fmt: skip
    assert a["counts"] == "changes=1,messages=3,statuses=2"
    assert a["verdict"] == "any"
    assert a["received_at"].endswith("Z")


def test_lambda_splits_a_3mb_body_into_valid_notifications(
    sqs_endpoint: str, sqs_queue: Any, sqs_client: Any
) -> None:
    url = sqs_queue()
    rx = LambdaReceiver(settings(sqs_endpoint, url))
    entries = []
    for e in range(10):
        changes = [
            samples.change(
                [samples.text_message(e * 10_000 + c * 1000 + i) for i in range(450)],
                [samples.status(e * 10_000 + c * 1000 + i) for i in range(100)],
                phone_number_id=f"1065403522{e:05d}",
            )
            for c in range(3)
        ]
        entries.append((f"10229012934{e:04d}", changes))
    body = samples.notification(*entries)
    assert len(body) > 3 * 1024 * 1024 - 200_000
    assert rx(rest(body, sign(body, SECRET)), None)["statusCode"] == 200
    messages = drain(sqs_client, url)
    assert len(messages) > 12
    order = sorted(messages, key=part_number)
    parts = [m["Body"].encode() for m in order]
    n = len(parts)
    assert [attrs(m)["part"] for m in order] == [f"{i}/{n}" for i in range(1, n + 1)]
    assert {attrs(m)["body_sha256"] for m in messages} == {summarize(body).sha256}
    assert all(len(p) <= 256 * 1024 for p in parts)
    assert events(*parts) == events(body)


def test_lambda_503_when_sqs_refuses(sqs_endpoint: str, sqs_client: Any, sqs_queue: Any) -> None:
    body = samples.sized(3000)
    event = rest(body, sign(body, SECRET))
    # A queue that does not exist.
    missing = sqs_endpoint + "/123456789012/no-such-queue"
    assert LambdaReceiver(settings(sqs_endpoint, missing))(event, None)["statusCode"] == 503
    # A queue whose maximum message size is smaller than the body.
    url = sqs_queue()
    sqs_client.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})
    assert LambdaReceiver(settings(sqs_endpoint, url))(event, None)["statusCode"] == 503
    assert drain(sqs_client, url) == []
    # No SQS listening at all.
    dead = settings("http://127.0.0.1:9", url)
    assert LambdaReceiver(dead)(event, None)["statusCode"] == 503


def test_lambda_keeps_a_signed_non_notification(
    sqs_endpoint: str, sqs_queue: Any, sqs_client: Any
) -> None:
    url = sqs_queue()
    rx = LambdaReceiver(settings(sqs_endpoint, url))
    body = b'{"object":"instagram","entry":[]}'
    assert rx(rest(body, sign(body, SECRET)), None)["statusCode"] == 200
    [message] = drain(sqs_client, url)
    assert message["Body"].encode() == body
    assert attrs(message)["problem"].startswith("not a WhatsApp notification")


def test_lambda_fifo_queue(sqs_endpoint: str, sqs_queue: Any, sqs_client: Any) -> None:
    url = sqs_queue(fifo=True)
    rx = LambdaReceiver(settings(sqs_endpoint, url))
    body = samples.sample()
    for _ in range(2):  # Meta's retry: deduplicated by the queue
        assert rx(rest(body, sign(body, SECRET)), None)["statusCode"] == 200
    [message] = drain(sqs_client, url)
    assert message["Body"].encode() == body


async def test_serve_forwards_to_sqs(
    sqs_endpoint: str, sqs_queue: Any, sqs_client: Any, tmp_path: Path
) -> None:
    url = sqs_queue()
    s = settings(sqs_endpoint, url, port=0, data_dir=str(tmp_path))
    banner = io.StringIO()
    async with Server(s, out=banner) as server, aiohttp.ClientSession() as http:
        assert f"SQS queue {url}" in banner.getvalue()
        small = samples.sample(messages=2, statuses=0)
        big = samples.sized(1_200_000, start=10_000)
        for body in (small, big):
            headers = {"X-Hub-Signature-256": sign(body, SECRET)}
            async with http.post(server.url, data=io.BytesIO(body), headers=headers) as r:
                assert r.status == 200
        wrong = {"X-Hub-Signature-256": "sha256=00"}
        async with http.post(server.url, data=small, headers=wrong) as r:
            assert r.status == 403
    messages = drain(sqs_client, url)
    by_digest: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        by_digest.setdefault(attrs(m)["body_sha256"], []).append(m)
    assert [m["Body"].encode() for m in by_digest[summarize(small).sha256]] == [small]
    parts = sorted(by_digest[summarize(big).sha256], key=part_number)
    assert len(parts) >= 5
    assert events(*(m["Body"].encode() for m in parts)) == events(big)


async def test_serve_503_when_sqs_is_unreachable(tmp_path: Path) -> None:
    s = settings("http://127.0.0.1:9", "http://127.0.0.1:9/123456789012/q", port=0,
                 data_dir=str(tmp_path))  # fmt: skip
    async with Server(s, out=io.StringIO()) as server, aiohttp.ClientSession() as http:
        body = samples.sample()
        headers = {"X-Hub-Signature-256": sign(body, SECRET)}
        async with http.post(server.url, data=body, headers=headers) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "5"


@pytest.mark.parametrize("shape", ["v1", "v2"])
def test_lambda_handshake_against_real_settings(shape: str, sqs_endpoint: str) -> None:
    rx = LambdaReceiver(settings(sqs_endpoint, "unused"))
    q = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "ch"}
    if shape == "v1":
        event: dict[str, Any] = {
            "httpMethod": "GET",
            "path": "/webhook",
            "queryStringParameters": q,
        }
    else:
        raw = "&".join(f"{k}={v}" for k, v in q.items())
        event = {"version": "2.0", "rawPath": "/", "rawQueryString": raw,
                 "requestContext": {"http": {"method": "GET"}}}  # fmt: skip
    assert json.dumps(rx(event, None)["body"]) == '"ch"'


def test_lambda_accepts_organization_tokens_and_secrets(
    sqs_endpoint: str, sqs_queue: Any, sqs_client: Any, db_dsn: str
) -> None:
    async def add_org(phone: str, token: str, secret: str) -> None:
        conn = await asyncpg.connect(db_dsn)
        try:
            await conn.execute(
                "INSERT INTO organizations (name, whatsapp_business_account_id,"
                " whatsapp_phone_number_id, whatsapp_webhook_verify_token, whatsapp_app_secret)"
                " VALUES ($1, $2, $3, $4, $5)",
                f"org {phone}", samples.WABA_ID + phone, phone, token, secret,
            )  # fmt: skip
        finally:
            await conn.close()

    asyncio.run(add_org("5550001", "org-a-token", "org-a-secret"))
    url = sqs_queue()
    rx = LambdaReceiver(settings(sqs_endpoint, url, dsn=db_dsn))
    q = {"hub.mode": "subscribe", "hub.verify_token": "org-a-token", "hub.challenge": "a"}
    get = {"httpMethod": "GET", "path": "/webhook", "queryStringParameters": q}
    assert rx(get, None)["statusCode"] == 200
    mine = samples.sample(phone_number_id="5550001", waba_id=samples.WABA_ID + "5550001")
    assert rx(rest(mine, sign(mine, "org-a-secret")), None)["statusCode"] == 200
    other = samples.sample(start=7)
    assert rx(rest(other, sign(other, "org-a-secret")), None)["statusCode"] == 403
    # An organization added after the first load: a refusal reloads once.
    asyncio.run(add_org("5550002", "org-b-token", "org-b-secret"))
    time.sleep(1.05)  # past the one-reload-a-second limit the 403 above used
    q["hub.verify_token"] = "org-b-token"
    assert rx(get, None)["statusCode"] == 200
    assert [m["Body"].encode() for m in drain(sqs_client, url)] == [mine]
