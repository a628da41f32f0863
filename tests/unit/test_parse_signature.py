"""X-Hub-Signature-256 checks and the GET subscription handshake (reference §1.1, §1.2)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.fixtures import load
from wahook.parse import decode, sign, verify_signature, verify_subscription

SECRET = "8f2b1c9d0e7a6f5b4c3d2e1f0a9b8c7d"
# What Meta sends: non-ASCII characters written as lowercase \uXXXX escapes.
ESCAPED = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
    b'"value":{"messages":[{"from":"1","id":"wamid.E","type":"text","timestamp":"1",'
    b'"text":{"body":"\\u0645\\u0631\\u062d\\u0628\\u0627 \\ud83d\\ude00 caf\\u00e9"}}]}}]}]}'
)
# The same document with the characters written literally, as UTF-8.
LITERAL = json.dumps(json.loads(ESCAPED), ensure_ascii=False, separators=(",", ":")).encode()


def hmac_header(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_fixture_documents_are_what_they_claim() -> None:
    assert ESCAPED.isascii()
    assert "مرحبا 😀 café".encode() in LITERAL
    (ev,) = decode(ESCAPED).events()
    (same,) = decode(LITERAL).events()
    assert ev.message == same.message  # type: ignore[union-attr]


def test_sign_is_meta_header_format() -> None:
    header = sign(ESCAPED, SECRET)
    assert header == hmac_header(ESCAPED)
    assert header.startswith("sha256=")
    assert len(header) == 7 + 64
    assert header[7:] == header[7:].lower()


def test_raw_bytes_signed_verify() -> None:
    for body in (ESCAPED, LITERAL, load("msg_text_literal_unicode"), b""):
        assert verify_signature(body, hmac_header(body), [SECRET])


def test_literal_body_signed_over_its_escaped_form_verifies() -> None:
    # Meta signs the escaped-unicode form; a body that arrives with literal characters
    # must still verify against that signature.
    assert verify_signature(LITERAL, hmac_header(ESCAPED), [SECRET])


def test_signature_of_reencoded_json_does_not_verify_the_raw_body() -> None:
    # The classic bug: hashing json.dumps(json.loads(body)) — spaces differ here.
    reencoded = json.dumps(json.loads(ESCAPED)).encode()
    assert reencoded != ESCAPED
    assert not verify_signature(ESCAPED, hmac_header(reencoded), [SECRET])


def test_tampered_body_fails() -> None:
    header = hmac_header(ESCAPED)
    assert not verify_signature(ESCAPED.replace(b"wamid.E", b"wamid.F"), header, [SECRET])
    assert not verify_signature(ESCAPED + b" ", header, [SECRET])


def test_header_as_bytes_with_spaces_and_upper_case() -> None:
    header = hmac_header(ESCAPED)
    assert verify_signature(ESCAPED, header.encode(), [SECRET])
    assert verify_signature(ESCAPED, f"  {header}\n", [SECRET])
    assert verify_signature(ESCAPED, "SHA256=" + header[7:].upper(), [SECRET])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256:" + "0" * 64,
        "sha256=" + "0" * 64,  # well formed, wrong
        "sha256=" + "zz" * 32,  # not hex
        "sha256=abc",  # too short
        "sha256=" + "00" * 33,  # too long
        b"sha256=\xff\xfe",  # bytes that are not ASCII
        "md5=d41d8cd98f00b204e9800998ecf8427e",
    ],
)
def test_missing_or_malformed_header_fails(header: str | bytes | None) -> None:
    assert not verify_signature(ESCAPED, header, [SECRET])


def test_wrong_secret_and_no_secrets_fail() -> None:
    header = hmac_header(ESCAPED)
    assert not verify_signature(ESCAPED, header, ["another-secret"])
    assert not verify_signature(ESCAPED, header, [])
    assert not verify_signature(ESCAPED, hmac_header(ESCAPED, ""), [""])  # empty secrets ignored


def test_any_of_several_secrets_verifies_rotation() -> None:
    old, new = "old-secret", "new-secret"
    secrets = [new, old, b"third-app-secret"]
    assert verify_signature(ESCAPED, hmac_header(ESCAPED, old), secrets)
    assert verify_signature(ESCAPED, hmac_header(ESCAPED, new), secrets)
    assert verify_signature(ESCAPED, hmac_header(ESCAPED, "third-app-secret"), secrets)
    assert verify_signature(LITERAL, hmac_header(ESCAPED, old), iter(secrets))  # any iterable
    assert not verify_signature(ESCAPED, hmac_header(ESCAPED, "retired"), secrets)


def test_invalid_utf8_body_only_verifies_over_its_raw_bytes() -> None:
    body = b'{"x":"\xff"}'
    assert verify_signature(body, hmac_header(body), [SECRET])
    assert not verify_signature(body, hmac_header(b'{"x":"\\u00ff"}'), [SECRET])


# --- the GET handshake ---------------------------------------------------------------


def params(mode: str = "subscribe", token: str = "tok-1", challenge: str = "1158201444") -> dict:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}


def test_subscription_echoes_the_challenge() -> None:
    assert verify_subscription(params(), ["tok-1"]) == "1158201444"
    assert verify_subscription(params(challenge="a random string!"), ["x", "tok-1"]) == (
        "a random string!"
    )


def test_subscription_with_lists_as_parse_qs_gives() -> None:
    query = {
        "hub.mode": ["subscribe"],
        "hub.verify_token": ["tok-1", "other"],
        "hub.challenge": ["42"],
    }
    assert verify_subscription(query, ["tok-1"]) == "42"
    assert verify_subscription({**query, "hub.challenge": []}, ["tok-1"]) is None


@pytest.mark.parametrize(
    "query",
    [
        params(mode="unsubscribe"),
        params(mode="Subscribe"),
        params(mode=""),
        params(token="tok-2"),
        params(token="tok-1 "),
        params(token=""),
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "tok-1"},
        {},
    ],
)
def test_subscription_refused(query: dict) -> None:
    assert verify_subscription(query, ["tok-1"]) is None


def test_empty_tokens_never_match() -> None:
    assert verify_subscription(params(token=""), [""]) is None
    assert verify_subscription(params(), []) is None


def test_unicode_token() -> None:
    assert verify_subscription(params(token="sécret-🔑"), ["sécret-🔑"]) == "1158201444"
    assert verify_subscription(params(token="secret-🔑"), ["sécret-🔑"]) is None
