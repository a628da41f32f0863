"""The transport-free receiver core: every answer it gives, without a server."""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import pytest

from wahook.parse import sign
from wahook.receiver import samples
from wahook.receiver.core import (
    NO_CREDENTIALS,
    Accepted,
    Receiver,
    Request,
    Response,
)
from wahook.verdict import ANY, Verdict

TOKEN = "verify-tok-3f9c"
SECRET = "app-secret-7d2a"


def make(**kw: object) -> Receiver:
    args: dict[str, object] = {"verify_tokens": (TOKEN,), "app_secrets": (SECRET,)}
    args.update(kw)
    return Receiver(**args)  # type: ignore[arg-type]


def post(body: bytes, headers: dict[str, str] | None = None, path: str = "/webhook") -> Request:
    return Request("POST", path, {}, headers if headers is not None else {}, body)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"x-hub-signature-256": sign(body, secret)}


class Orgs:
    """Credentials of two organizations, like ``OrgCredentials`` after a load."""

    def __init__(self) -> None:
        self.asked: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    def verify_tokens(self) -> tuple[str, ...]:
        return ("org-token-a",)

    def app_secrets(self, phone_number_ids: object, waba_ids: object) -> dict[str, frozenset[int]]:
        phones, wabas = tuple(phone_number_ids), tuple(waba_ids)  # type: ignore[call-overload]
        self.asked.append((phones, wabas))
        return {"org-secret-a": frozenset({1})} if "111" in phones else {}


def test_handshake_echoes_the_challenge_as_text() -> None:
    q = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    r = make().handle(Request("GET", "/webhook", q, {}))
    assert isinstance(r, Response)
    assert (r.status, r.body) == (200, b"1158201444")
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": TOKEN},
        {},
    ],
)
def test_handshake_refuses_anything_else(query: dict[str, str]) -> None:
    r = make().handle(Request("GET", "/webhook", query, {}))
    assert isinstance(r, Response)
    assert r.status == 403


def test_handshake_accepts_an_organizations_token() -> None:
    q = {"hub.mode": "subscribe", "hub.verify_token": "org-token-a", "hub.challenge": "x"}
    assert make(credentials=Orgs()).handle(Request("GET", "/webhook", q, {})).status == 200  # type: ignore[union-attr]
    assert make().handle(Request("GET", "/webhook", q, {})).status == 403  # type: ignore[union-attr]


def test_signed_post_is_accepted_with_its_summary() -> None:
    body = samples.sample(messages=3, statuses=2)
    r = make().handle(post(body, signed(body)))
    assert isinstance(r, Accepted)
    assert r.body == body
    s = r.summary
    assert (s.messages, s.statuses, s.changes, s.entries) == (3, 2, 1, 1)
    assert s.waba_ids == (samples.WABA_ID,)
    assert s.phone_number_ids == (samples.PHONE_NUMBER_ID,)
    assert s.fields == ("messages",)
    assert s.problem is None


def test_literal_utf8_body_signed_over_its_escaped_form() -> None:
    # Meta's Graph docs: the digest is taken over the escaped-unicode payload.
    escaped = samples.sample()
    literal = json.dumps(json.loads(escaped), ensure_ascii=False, separators=(",", ":")).encode()
    assert literal != escaped
    assert "👋".encode() in literal
    assert isinstance(make().handle(post(literal, signed(escaped))), Accepted)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-hub-signature-256": ""}, 401),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, 403),
        ({"x-hub-signature-256": "sha1=abc"}, 403),
        ({"x-hub-signature-256": "garbage"}, 403),
    ],
)
def test_missing_or_wrong_signature(headers: dict[str, str], status: int) -> None:
    r = make().handle(post(samples.sample(), headers))
    assert isinstance(r, Response)
    assert r.status == status


def test_signature_with_another_secret_is_refused() -> None:
    body = samples.sample()
    r = make().handle(post(body, signed(body, "someone-else")))
    assert isinstance(r, Response)
    assert r.status == 403


def test_any_of_several_secrets_rotation() -> None:
    body = samples.sample()
    rx = make(app_secrets=("old-secret", SECRET))
    assert isinstance(rx.handle(post(body, signed(body, "old-secret"))), Accepted)
    assert isinstance(rx.handle(post(body, signed(body, SECRET))), Accepted)


def test_the_app_secret_of_the_organization_the_body_names() -> None:
    orgs = Orgs()
    rx = make(app_secrets=(), credentials=orgs)
    mine = samples.sample(phone_number_id="111")
    other = samples.sample(phone_number_id="222")
    accepted = rx.handle(post(mine, signed(mine, "org-secret-a")))
    assert isinstance(accepted, Accepted)
    assert accepted.verdict == Verdict.of({1})
    # Another organization's body signed with org a's secret does not pass.
    refused = rx.handle(post(other, signed(other, "org-secret-a")))
    assert isinstance(refused, Response)
    assert refused.status == 403
    assert orgs.asked[0] == (("111",), (samples.WABA_ID,))


class SharedOrgs:
    """Organizations 1 and 2 (phone 111, 222) each with their own secret; 3 shares 1's
    secret (one Meta app); 4 (phone 444) has none."""

    holders: ClassVar = {"secret-1": frozenset({1, 3}), "secret-2": frozenset({2})}
    by_phone: ClassVar = {"111": "secret-1", "222": "secret-2", "333": "secret-1"}

    def verify_tokens(self) -> tuple[str, ...]:
        return ()

    def app_secrets(self, phone_number_ids: object, waba_ids: object) -> dict[str, frozenset[int]]:
        named = [self.by_phone[p] for p in phone_number_ids if p in self.by_phone]  # type: ignore[attr-defined]
        return {s: self.holders[s] for s in named}


def two_tenants_body(*phones: str) -> bytes:
    """One entry per phone number id, each with one status."""
    entries = []
    for p in phones:
        status = {"id": f"wamid.{p}", "status": "sent", "timestamp": "1", "recipient_id": "1"}
        value = {"metadata": {"phone_number_id": p}, "statuses": [status]}
        entries.append({"id": f"waba-{p}", "changes": [{"field": "messages", "value": value}]})
    return json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()


def test_verdict_is_the_organizations_whose_secret_verified() -> None:
    rx = make(app_secrets=(SECRET,), credentials=SharedOrgs())
    body = two_tenants_body("111", "222")
    by_deployment = rx.handle(post(body, signed(body, SECRET)))
    assert isinstance(by_deployment, Accepted)
    assert by_deployment.verdict == ANY
    # Signed with organization 1's secret: 1 and 3 (same secret), never 2.
    by_one = rx.handle(post(body, signed(body, "secret-1")))
    assert isinstance(by_one, Accepted)
    assert by_one.verdict == Verdict.of({1, 3})
    by_two = rx.handle(post(body, signed(body, "secret-2")))
    assert isinstance(by_two, Accepted)
    assert by_two.verdict == Verdict.of({2})
    # A secret of an organization the body does not name is not tried: 403.
    only_two = two_tenants_body("222")
    refused = rx.handle(post(only_two, signed(only_two, "secret-1")))
    assert isinstance(refused, Response)
    assert refused.status == 403


def test_oversize_body_is_413() -> None:
    body = samples.sized(5000)
    r = make(max_body_bytes=4096).handle(post(body, signed(body)))
    assert isinstance(r, Response)
    assert r.status == 413
    assert make(max_body_bytes=4096).too_large(4097) is not None
    assert make(max_body_bytes=4096).too_large(4096) is None


def test_signed_non_notification_is_accepted_and_labelled() -> None:
    for body in (b'{"hello": "world"}', b"not json at all", b'{"object":"page","entry":[]}'):
        r = make().handle(post(body, signed(body)))
        assert isinstance(r, Accepted), body
        assert r.summary.problem is not None
        assert r.summary.problem.startswith("not a WhatsApp notification")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/webhook", 405),
        ("DELETE", "/webhook", 405),
        ("GET", "/elsewhere", 404),
        ("POST", "/webhook/extra", 404),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
    ],
)
def test_methods_and_paths(method: str, path: str, status: int) -> None:
    r = make().handle(Request(method, path, {}, {}))
    assert isinstance(r, Response)
    assert r.status == status
    if status == 405:
        assert r.headers["allow"] == "GET, POST"


def test_readiness_follows_the_callable() -> None:
    ready = [False]
    rx = make(ready=lambda: ready[0])
    assert rx.handle(Request("GET", "/readyz", {}, {})).status == 503  # type: ignore[union-attr]
    ready[0] = True
    assert rx.handle(Request("GET", "/readyz", {}, {})).status == 200  # type: ignore[union-attr]


def test_any_path_is_the_webhook_when_paths_are_none() -> None:
    body = samples.sample()
    rx = make(webhook_paths=None)
    assert isinstance(rx.handle(post(body, signed(body), path="/prod/whatever")), Accepted)
    assert rx.handle(Request("GET", "/healthz", {}, {})).status == 200  # type: ignore[union-attr]


def test_delivery_outcomes() -> None:
    body = samples.sample()
    rx = make()
    accepted = rx.handle(post(body, signed(body)))
    assert isinstance(accepted, Accepted)
    assert rx.delivered(accepted, "test").status == 200
    failed = rx.not_delivered(accepted, "queue down")
    assert failed.status == 503


def test_no_secret_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rx = make(credentials=Orgs())
    body = samples.sample(phone_number_id="111")
    for token in (TOKEN, "wrong-token", "org-token-a"):
        q = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "c"}
        rx.handle(Request("GET", "/webhook", q, {}))
    for headers in ({}, signed(body), signed(body, "org-secret-a"), signed(body, "nope")):
        decision = rx.handle(post(body, headers))
        if isinstance(decision, Accepted):
            rx.delivered(decision, "x")
            rx.not_delivered(decision, "y")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records
    for secret in (TOKEN, SECRET, "org-token-a", "org-secret-a", sign(body, SECRET)[7:]):
        assert secret not in text


def test_no_credentials_is_empty() -> None:
    assert tuple(NO_CREDENTIALS.verify_tokens()) == ()
    assert dict(NO_CREDENTIALS.app_secrets(["1"], ["2"])) == {}
