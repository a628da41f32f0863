"""`wahook serve` in-process: a real aiohttp server on a loopback port, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from wahook.parse import sign
from wahook.receiver import samples
from wahook.receiver.app import InProcessDelivery, ReceiverApp
from wahook.receiver.core import Receiver
from wahook.receiver.credentials import OrgCredentials
from wahook.receiver.serve import Server
from wahook.settings import Settings
from wahook.verdict import ANY, Verdict

TOKEN = "serve-token-5be1"
SECRET = "serve-secret-a9d3"
ORG_TOKEN = "org-token-77c2"
ORG_SECRET = "org-secret-0f4e"
ORG_PHONE = "106540352200001"


async def add_org(dsn: str, phone: str, token: str | None, secret: str | None,
                  waba: str = samples.WABA_ID) -> None:  # fmt: skip
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO organizations (name, whatsapp_business_account_id,"
            " whatsapp_phone_number_id, whatsapp_webhook_verify_token, whatsapp_app_secret)"
            " VALUES ($1, $2, $3, $4, $5)",
            f"org {phone}", waba, phone, token, secret,
        )  # fmt: skip
    finally:
        await conn.close()


async def count(dsn: str, query: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


def settings(dsn: str, data_dir: Path, **kw: object) -> Settings:
    base = Settings(
        dsn=dsn,
        verify_token=TOKEN,
        app_secrets=(SECRET,),
        port=0,
        data_dir=str(data_dir),
        batch_max_age=0.02,
        grace_seconds=10.0,
    )
    return base.replace(**kw)


@pytest.fixture
async def server(db_dsn: str, tmp_path: Path) -> AsyncIterator[Server]:
    await add_org(db_dsn, samples.PHONE_NUMBER_ID, None, None)
    async with Server(settings(db_dsn, tmp_path), out=io.StringIO()) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: bytes, secret: str | None = SECRET,
               **headers: str) -> tuple[int, str]:  # fmt: skip
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    async with http.post(url, data=body, headers=headers) as r:
        return r.status, await r.text()


async def test_handshake(server: Server, http: aiohttp.ClientSession) -> None:
    q = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    async with http.get(server.url, params=q) as r:
        assert (r.status, await r.text()) == (200, "1158201444")
        assert r.content_type == "text/plain"
    async with http.get(server.url, params={**q, "hub.verify_token": "nope"}) as r:
        assert r.status == 403
    async with http.get(server.url) as r:
        assert r.status == 403


async def test_signed_emoji_posts_reach_postgres(
    server: Server, http: aiohttp.ClientSession, db_dsn: str
) -> None:
    body = samples.sample(messages=2, statuses=1)
    assert b"\\ud83d\\udc4b" in body  # 👋 as Meta escapes it
    assert await post(http, server.url, body) == (200, "EVENT_RECEIVED")
    rows = await count(db_dsn, "SELECT count(*) FROM incoming_messages WHERE content LIKE '%👋%'")
    assert rows == 2
    # The same body again (Meta retries): nothing new.
    assert (await post(http, server.url, body))[0] == 200
    assert await count(db_dsn, "SELECT count(*) FROM incoming_messages") == 2


async def test_literal_utf8_body_signed_over_its_escaped_form(
    server: Server, http: aiohttp.ClientSession, db_dsn: str
) -> None:
    escaped = samples.sample(messages=1, statuses=0, start=500)
    literal = json.dumps(json.loads(escaped), ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"X-Hub-Signature-256": sign(escaped, SECRET)}
    async with http.post(server.url, data=literal, headers=headers) as r:
        assert r.status == 200
    assert await count(db_dsn, "SELECT count(*) FROM incoming_messages") == 1


async def test_batched_concurrent_posts_all_reach_postgres(
    server: Server, http: aiohttp.ClientSession, db_dsn: str
) -> None:
    bodies = [samples.sample(messages=10, statuses=5, start=i * 100) for i in range(30)]
    results = await asyncio.gather(*(post(http, server.url, b) for b in bodies))
    assert {status for status, _ in results} == {200}
    assert await count(db_dsn, "SELECT count(*) FROM incoming_messages") == 300
    assert await count(db_dsn, "SELECT count(*) FROM webhook_events") == 450


@pytest.mark.parametrize(
    ("secret", "headers", "status"),
    [
        (None, {}, 401),
        ("wrong-secret", {}, 403),
        (None, {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
    ],
)
async def test_unsigned_or_wrongly_signed_posts_store_nothing(
    server: Server, http: aiohttp.ClientSession, db_dsn: str,
    secret: str | None, headers: dict[str, str], status: int,
) -> None:  # fmt: skip
    assert (await post(http, server.url, samples.sample(), secret, **headers))[0] == status
    assert await count(db_dsn, "SELECT count(*) FROM webhook_events") == 0


async def test_oversize_bodies_are_refused(
    db_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with Server(settings(db_dsn, tmp_path, max_body_bytes=10_000), out=io.StringIO()) as s:
        body = samples.sized(20_000)
        assert (await post(http, s.url, body))[0] == 413

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        headers = {"X-Hub-Signature-256": sign(body, SECRET)}
        async with http.post(s.url, data=chunks(), headers=headers) as r:
            assert r.status == 413
        fits = samples.sized(5_000)
        assert (await post(http, s.url, fits))[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/webhook", 405),
        ("DELETE", "/webhook", 405),
        ("PATCH", "/webhook", 405),
        ("GET", "/", 404),
        ("POST", "/hook", 404),
        ("GET", "/webhook/../etc/passwd", 404),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
    ],
)
async def test_methods_and_paths(
    server: Server, http: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    base = server.url.removesuffix("/webhook")
    async with http.request(method, base + path) as r:
        assert r.status == status


async def test_signed_non_notification_is_quarantined_and_answered_200(
    server: Server, http: aiohttp.ClientSession, db_dsn: str
) -> None:
    body = b'{"object":"page","entry":[{"id":"1","messaging":[]}]}'
    assert (await post(http, server.url, body))[0] == 200
    rows = await count(db_dsn, "SELECT count(*) FROM quarantine WHERE raw = "
                       "convert_to('" + body.decode() + "', 'UTF8')")  # fmt: skip
    assert rows == 1


async def test_per_organization_tokens_and_secrets(
    server: Server, http: aiohttp.ClientSession, db_dsn: str
) -> None:
    # Added while the server runs: a refusal reloads the organizations once.
    await add_org(db_dsn, ORG_PHONE, ORG_TOKEN, ORG_SECRET, waba="999000111")
    q = {"hub.mode": "subscribe", "hub.verify_token": ORG_TOKEN, "hub.challenge": "42"}
    async with http.get(server.url, params=q) as r:
        assert (r.status, await r.text()) == (200, "42")
    theirs = samples.sample(start=900, waba_id="999000111", phone_number_id=ORG_PHONE)
    assert (await post(http, server.url, theirs, ORG_SECRET))[0] == 200
    # Their secret does not sign for another organization's numbers.
    other = samples.sample(start=950)
    assert (await post(http, server.url, other, ORG_SECRET))[0] == 403
    assert await count(db_dsn, "SELECT count(*) FROM incoming_messages") == 1


async def test_deactivated_organization_is_refused_after_reload(
    server: Server, http: aiohttp.ClientSession, db_dsn: str
) -> None:
    await add_org(db_dsn, ORG_PHONE, ORG_TOKEN, ORG_SECRET)
    q = {"hub.mode": "subscribe", "hub.verify_token": ORG_TOKEN, "hub.challenge": "1"}
    async with http.get(server.url, params=q) as r:
        assert r.status == 200
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "UPDATE organizations SET is_active = false WHERE whatsapp_phone_number_id = $1",
            ORG_PHONE,
        )
    finally:
        await conn.close()
    assert isinstance(server.credentials, OrgCredentials)
    assert await server.credentials.refresh(force=True)  # what the periodic reload does
    async with http.get(server.url, params=q) as r:
        assert r.status == 403


async def test_graceful_stop_stores_everything_answered_200(
    db_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    await add_org(db_dsn, samples.PHONE_NUMBER_ID, None, None)
    srv = Server(settings(db_dsn, tmp_path), out=io.StringIO())
    await srv.__aenter__()
    assert srv.app is not None
    bodies = [samples.sample(messages=1, statuses=0, start=i) for i in range(40)]
    tasks = [asyncio.create_task(post(http, srv.url, b)) for b in bodies]
    async with asyncio.timeout(30):  # the stop begins while bodies wait for their batch
        while srv.app.in_flight == 0:  # noqa: ASYNC110  # a counter of the app's: no event to wait on
            await asyncio.sleep(0.001)
    in_flight = srv.app.in_flight
    await srv.__aexit__(None, None, None)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    answered = [o for o in outcomes if not isinstance(o, aiohttp.ClientConnectionError)]
    # What the server had taken in was finished and stored; nothing got a 5xx; what it
    # never read was refused at the connection (the client retries, as Meta does).
    assert answered == [(200, "EVENT_RECEIVED")] * len(answered)
    assert len(answered) >= in_flight >= 1
    assert await count(db_dsn, "SELECT count(*) FROM incoming_messages") == len(answered)
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(srv.url.removesuffix("/webhook") + "/healthz")


async def test_no_secret_in_any_log_line(
    db_dsn: str, tmp_path: Path, http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    await add_org(db_dsn, ORG_PHONE, ORG_TOKEN, ORG_SECRET)
    banner = io.StringIO()
    async with Server(settings(db_dsn, tmp_path), out=banner) as s:
        for token in (TOKEN, ORG_TOKEN, "bad"):
            q = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "c"}
            async with http.get(s.url, params=q):
                pass
        body = samples.sample(phone_number_id=ORG_PHONE)
        for secret in (SECRET, ORG_SECRET, "bad", None):
            await post(http, s.url, body, secret)
        await post(http, s.url, b"not json", SECRET)
    out = capsys.readouterr()
    logged = "\n".join([r.getMessage() for r in caplog.records] + [out.out, out.err])
    assert "http_request" in logged  # the access log was captured
    for secret in (TOKEN, SECRET, ORG_TOKEN, ORG_SECRET, sign(body, SECRET)[7:]):
        assert secret not in logged
    # The banner shows the verify token in use (by design) but never an app secret.
    assert TOKEN in banner.getvalue()
    assert SECRET not in banner.getvalue()
    assert ORG_SECRET not in banner.getvalue()


async def test_in_process_delivery_outcomes(http: aiohttp.ClientSession) -> None:
    """The app with stand-in pipelines: not running, not committing, committing."""

    class Queue:
        def __init__(self, committed: bool | None) -> None:
            self.committed = committed

        async def put(self, body: bytes, *, id: str | None = None,
                      received_at: float | None = None,
                      verdict: Verdict = ANY) -> asyncio.Future[bool]:  # fmt: skip
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            if self.committed is not None:
                done.set_result(self.committed)
            return done

    cases = [
        (InProcessDelivery(Queue(True), ready=lambda: False), 503),  # pipeline gone
        (InProcessDelivery(Queue(False)), 503),  # the batch was not committed
        (InProcessDelivery(Queue(None), timeout=0.05), 503),  # never committed in time
        (InProcessDelivery(Queue(True)), 200),
    ]
    body = samples.sample()
    for delivery, status in cases:
        app = ReceiverApp(Receiver(app_secrets=(SECRET,)), delivery)
        runner = web.AppRunner(app.make_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            got = await post(http, f"http://127.0.0.1:{port}/webhook", body)
            assert got[0] == status
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == (503 if delivery.ready() is False else 200)
        finally:
            await runner.cleanup()
