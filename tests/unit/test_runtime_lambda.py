"""The Lambda SQS handler with a fake sink: failures reported, remaining-time guard, FIFO
groups, EMF lines, one loop and one sink across warm invocations."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.unit.test_runtime_pipeline import FakeSink, body
from wahook.runtime.lambda_sqs import LambdaHandler, LambdaSqsSource, make_handler
from wahook.settings import Settings


class Context:
    aws_request_id = "req-1"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sqs_event(
    bodies: Sequence[bytes], *, fifo: bool = False, groups: Sequence[str] = ()
) -> dict[str, Any]:
    arn = "arn:aws:sqs:us-east-1:123456789012:wahook" + (".fifo" if fifo else "")
    records = []
    for i, b in enumerate(bodies):
        attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"}
        if groups:
            attributes["MessageGroupId"] = groups[i]
        records.append(
            {
                "messageId": f"id-{i}",
                "receiptHandle": f"rh-{i}",
                "body": b.decode(),
                "attributes": attributes,
                "messageAttributes": {"verdict": {"stringValue": "any", "dataType": "String"}},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
            }
        )
    return {"Records": records}


_handlers: list[LambdaHandler] = []


@pytest.fixture(autouse=True)
def _close_handlers() -> Iterator[None]:
    yield
    while _handlers:
        _handlers.pop().close()


def handler_with(sink: Any, **options: Any) -> tuple[LambdaHandler, io.StringIO, list[Any]]:
    opened: list[Any] = []
    metrics = io.StringIO()

    async def factory(settings: Settings) -> Any:
        opened.append(settings)
        return sink

    h = make_handler(Settings(), sink_factory=factory, metrics_stream=metrics, **options)
    _handlers.append(h)
    return h, metrics, opened


def failures(result: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in result["batchItemFailures"]]


def test_all_committed_reports_nothing_and_one_batch() -> None:
    sink = FakeSink()
    h, metrics, _ = handler_with(sink)
    assert failures(h(sqs_event([body(i) for i in range(5)]), Context())) == []
    assert sink.writes == [[f"id-{i}" for i in range(5)]]
    line = json.loads(metrics.getvalue().splitlines()[-1])
    assert line["Records"] == 5
    assert line["BatchItemFailures"] == 0
    assert {m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]} >= {"Events"}


def test_sink_failed_records_are_the_only_ones_reported() -> None:
    sink = FakeSink()
    sink.fail_ids = {"id-1"}
    h, _, _ = handler_with(sink)
    assert failures(h(sqs_event([body(i) for i in range(3)]), Context())) == ["id-1"]


def test_database_down_reports_every_record() -> None:
    sink = FakeSink()
    sink.transient_failures = 10**6
    h, _, _ = handler_with(sink, retry_for=0.05)
    result = h(sqs_event([body(i) for i in range(4)]), Context())
    assert failures(result) == [f"id-{i}" for i in range(4)]


def test_remaining_time_guard_fails_what_cannot_finish() -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()  # the write never returns
    h, _, _ = handler_with(sink, safety_ms=100)
    result = h(sqs_event([body(i) for i in range(3)]), Context(remaining_ms=300))
    assert failures(result) == ["id-0", "id-1", "id-2"]


def test_no_time_left_fails_everything_without_writing() -> None:
    sink = FakeSink()
    h, _, _ = handler_with(sink, safety_ms=1000)
    assert failures(h(sqs_event([body(0)]), Context(remaining_ms=500))) == ["id-0"]
    assert sink.writes == []


def test_fifo_failure_fails_the_rest_of_its_group_only() -> None:
    sink = FakeSink()
    sink.fail_ids = {"id-1"}
    h, _, _ = handler_with(sink)
    event = sqs_event([body(i) for i in range(5)], fifo=True, groups="ABABA")
    # id-1 (group B) failed, so id-3 (B, later) fails too; group A is untouched.
    assert failures(h(event, Context())) == ["id-1", "id-3"]


def test_warm_invocations_reuse_loop_and_sink() -> None:
    sink = FakeSink()
    h, _, opened = handler_with(sink)
    h(sqs_event([body(0)]), Context())
    loop = h.loop
    h(sqs_event([body(1)]), Context())
    assert h.loop is loop
    assert len(opened) == 1
    assert h.invocations == 2


def test_sink_that_cannot_open_fails_everything_and_retries_next_time() -> None:
    calls = []

    async def broken(settings: Settings) -> Any:
        calls.append(1)
        raise OSError("connection refused")

    h = make_handler(Settings(), sink_factory=broken, metrics_stream=io.StringIO())
    _handlers.append(h)
    assert failures(h(sqs_event([body(0), body(1)]), Context())) == ["id-0", "id-1"]
    assert failures(h(sqs_event([body(0)]), Context())) == ["id-0"]
    assert len(calls) == 2


def test_base64_bodies_and_received_at_attribute() -> None:
    import base64

    record = {
        "messageId": "m",
        "body": base64.b64encode(b"\xff\xfe not utf-8").decode(),
        "attributes": {},
        "messageAttributes": {
            "content_encoding": {"stringValue": "base64", "dataType": "String"},
            "received_at": {"stringValue": "2023-11-14T22:13:20Z", "dataType": "String"},
        },
    }
    [message] = LambdaSqsSource([record]).messages
    assert message.body == b"\xff\xfe not utf-8"
    assert message.received_at == 1700000000.0


def test_a_sink_that_hangs_on_opening_is_bounded_by_the_remaining_time() -> None:
    async def hanging(settings: Settings) -> Any:
        await asyncio.sleep(3600)

    h = make_handler(Settings(), sink_factory=hanging, metrics_stream=io.StringIO())
    _handlers.append(h)
    result = h(sqs_event([body(0), body(1)]), Context(remaining_ms=1600))  # 0.1 s budget
    assert failures(result) == ["id-0", "id-1"]
