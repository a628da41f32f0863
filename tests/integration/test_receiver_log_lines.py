"""One request, one verdict in the log: a refusal that reloads the organizations and judges
again is logged once, with the final verdict (a real aiohttp server on loopback)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest
from aiohttp import web

from wahook.parse import sign
from wahook.receiver import samples
from wahook.receiver.app import ReceiverApp
from wahook.receiver.core import Accepted, Receiver
from wahook.receiver.credentials import OrgCredentials
from wahook.sinks.queries import OrganizationSecrets

ORG = OrganizationSecrets(
    id=1, name="late", waba_id=samples.WABA_ID, phone_number_id=samples.PHONE_NUMBER_ID,
    verify_token="late-token", app_secret="late-secret",
)  # fmt: skip


class Stored:
    def ready(self) -> bool:
        return True

    async def __call__(self, accepted: Accepted) -> str:
        return "test"


class Server:
    def __init__(self) -> None:
        self.orgs: list[OrganizationSecrets] = []
        self.url = ""

    async def load(self) -> Sequence[OrganizationSecrets]:
        return list(self.orgs)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    credentials = OrgCredentials(srv.load, min_interval=0.0)
    receiver = Receiver(verify_tokens=["own"], app_secrets=["own-secret"], credentials=credentials)
    app = ReceiverApp(receiver, Stored(), refresh=credentials.refresh)
    runner = web.AppRunner(app.make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    srv.url = f"http://127.0.0.1:{port}/webhook"
    try:
        yield srv
    finally:
        await runner.cleanup()


def verdicts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage().split(" ", 1)[0]
        for r in caplog.records
        if r.name == "wahook.receiver"
        and r.getMessage().startswith(("handshake_", "signature_", "webhook_"))
    ]


async def test_each_request_is_judged_once_in_the_log(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wahook.receiver")
    body = samples.sample()
    async with aiohttp.ClientSession() as http:

        async def get(token: str) -> int:
            q = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "7"}
            async with http.get(server.url, params=q) as r:
                return r.status

        async def post(secret: str) -> int:
            headers = {"X-Hub-Signature-256": sign(body, secret)}
            async with http.post(server.url, data=body, headers=headers) as r:
                return r.status

        assert await get("wrong") == 403
        assert verdicts(caplog) == ["handshake_refused"]
        caplog.clear()

        assert await post("wrong") == 403
        assert verdicts(caplog) == ["signature_mismatch"]
        [record] = [r for r in caplog.records if r.getMessage().startswith("signature_")]
        assert isinstance(record.args, tuple)
        assert 1 in record.args  # secrets_tried, a number
        caplog.clear()

        # An organization added while the server runs: its first request is refused by
        # the credentials in memory, reloaded, and accepted; only the acceptance is logged.
        server.orgs.append(ORG)
        assert await get("late-token") == 200
        assert verdicts(caplog) == ["handshake_accepted"]
        caplog.clear()

        server.orgs.clear()
        assert await post("own-secret") == 200
        assert "signature_mismatch" not in verdicts(caplog)


def test_the_lambda_receiver_logs_one_verdict_too(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_receiver_lambda import SETTINGS, rest_v1
    from wahook.receiver.doubles import MemorySqs
    from wahook.receiver.lambda_handler import LambdaReceiver

    caplog.set_level(logging.DEBUG, logger="wahook.receiver")
    rx = LambdaReceiver(SETTINGS, client=MemorySqs())
    reloads: list[bool] = []
    # A reload that changed something (an organization came or went): judged again.
    monkeypatch.setattr(rx, "_reload", lambda: reloads.append(True) or True)
    body = samples.sample()
    headers = {"X-Hub-Signature-256": sign(body, "wrong")}
    assert rx(rest_v1("POST", body, headers=headers))["statusCode"] == 403
    q = {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}
    assert rx(rest_v1("GET", query=q))["statusCode"] == 403
    assert reloads == [True, True]
    assert verdicts(caplog) == ["signature_mismatch", "handshake_refused"]
