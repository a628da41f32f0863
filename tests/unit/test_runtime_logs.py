"""The log stream: stdlib records (the receiver's and the libraries') bridged into structlog
with their fields and types, and no secret in any line, whoever logged it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from wahook.runtime.logs import StdlibBridge, configure_logging, redact_text

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION = "FwoGZXIvYXdzEJr//////////wEaDEXAMPLESESSIONTOKEN"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    handler = StdlibBridge()
    names = ("wahook.t", "botocore", "asyncio")
    for name in names:
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    try:
        yield out
    finally:
        for name in names:
            log = logging.getLogger(name)
            log.removeHandler(handler)
            log.setLevel(logging.NOTSET)
            log.propagate = True
        structlog.reset_defaults()


def events(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_library_record_keeps_its_whole_message(stream: io.StringIO) -> None:
    logging.getLogger("botocore").info("Found credentials in environment variables.")
    logging.getLogger("asyncio").debug("Using selector: %s", "EpollSelector")
    first, second = events(stream)
    assert first["event"] == "Found credentials in environment variables."
    assert first["logger"] == "botocore"
    assert second["event"] == "Using selector: EpollSelector"


def test_receiver_fields_keep_their_types(stream: io.StringIO) -> None:
    logging.getLogger("wahook.t").warning(
        "signature_mismatch sha256=%s bytes=%d secrets_tried=%d waba_ids=%s ms=%.2f",
        "ab12", 49, 2, "1,2", 1.23456,
    )  # fmt: skip
    [event] = events(stream)
    assert event["event"] == "signature_mismatch"
    assert event["secrets_tried"] == 2  # a count, not a secret: not masked
    assert (event["bytes"], event["ms"], event["waba_ids"]) == (49, 1.23, "1,2")


def test_text_under_a_secret_name_is_still_masked(stream: io.StringIO) -> None:
    logging.getLogger("wahook.t").warning("oops app_secret=%s count=%d", "s3cr3t", 1)
    structlog.get_logger().info("e", verify_token="tok", secrets_tried=3, token_ok=True)
    first, second = events(stream)
    assert first["app_secret"] == "***"
    assert (second["verify_token"], second["secrets_tried"], second["token_ok"]) == (
        "***", 3, True,
    )  # fmt: skip


def signed_request() -> Any:
    request = AWSRequest(method="POST", url="http://127.0.0.1:5000/", data=b"Action=Receive")
    credentials = Credentials(KEY_ID, SECRET_KEY, SESSION)
    SigV4Auth(credentials, "sqs", "us-east-1").add_auth(request)
    return request.prepare()


def test_botocore_debug_lines_carry_no_credentials(stream: io.StringIO) -> None:
    prepared = signed_request()
    signature = prepared.headers["Authorization"].rsplit("Signature=", 1)[1]
    # As botocore.endpoint logs each request at DEBUG, and as a presigned URL would read.
    logging.getLogger("botocore.endpoint").debug("Sending http request: %s", prepared)
    logging.getLogger("botocore").debug(
        "url %s", f"https://q/?X-Amz-Credential={KEY_ID}%2F20260101&X-Amz-Signature={signature}"
    )
    # botocore.auth's records are nothing but signing internals: dropped whole.
    logging.getLogger("botocore.auth").debug("Signature:\n%s", signature)
    text = stream.getvalue()
    assert "Sending http request" in text
    for secret in (KEY_ID, signature, SESSION, SECRET_KEY):
        assert secret not in text
    assert "Signature:" not in text
    assert len(events(stream)) == 2


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Credential=AKIAIOSFODNN7EXAMPLE/2026/us-east-1/sqs/aws4_request, x", "Credential=***, x"),
        ("key ASIAIOSFODNN7EXAMPLE used", "key *** used"),
        ("{'X-Amz-Security-Token': b'abc/def=='}", "{'X-Amz-Security-Token': b'***'}"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("an ordinary AKIA word and Signature", "an ordinary AKIA word and Signature"),
    ],
)
def test_redact_text(text: str, masked: str) -> None:
    assert redact_text(text) == masked
