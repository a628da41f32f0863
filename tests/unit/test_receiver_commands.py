"""`wahook serve`'s logging bridge and `wahook post`'s argument handling."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from wahook.cli import build_parser
from wahook.runtime.logs import StdlibBridge, configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    log = logging.getLogger("wahook.test-bridge")
    handler = StdlibBridge()
    log.addHandler(handler)
    log.propagate = False
    try:
        yield out
    finally:
        log.removeHandler(handler)
        log.propagate = True
        structlog.reset_defaults()


def test_stdlib_events_become_structlog_fields(stream: io.StringIO) -> None:
    log = logging.getLogger("wahook.test-bridge")
    log.warning("kept_not_a_notification sha256=%s to=%s reason=%s",
                "ab12", "pipeline", "not a WhatsApp notification: object is 'page'")  # fmt: skip
    [line] = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "kept_not_a_notification"
    assert event["level"] == "warning"
    assert event["sha256"] == "ab12"
    assert event["to"] == "pipeline"
    assert event["reason"] == "not a WhatsApp notification: object is 'page'"
    assert event["logger"] == "wahook.test-bridge"


def test_bridged_events_are_redacted(stream: io.StringIO) -> None:
    logging.getLogger("wahook.test-bridge").error(
        "webhook_not_delivered reason=%s", "postgresql://u:hunter2@db/x down"
    )
    assert "hunter2" not in stream.getvalue()


def test_serve_and_post_parse_their_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "9000", "--queue-url", "http://q", "--grace", "3"])
    assert (args.port, args.queue_url, args.grace) == (9000, "http://q", 3.0)
    args = parser.parse_args(["post", "--sample", "--messages", "5", "--start", "7"])
    assert (args.sample, args.messages, args.start) == (True, 5, 7)
