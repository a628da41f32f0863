"""Small runtime parts: log redaction, the replay file source, the SQS message mapping,
the in-process source's backpressure, and the retry policy."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
import structlog

from tests.unit.test_runtime_pipeline import body
from wahook.runtime.failures import RetryPolicy
from wahook.runtime.files import FileSource
from wahook.runtime.inprocess import InProcessSource
from wahook.runtime.logs import configure_logging, redact_text
from wahook.runtime.sqs_message import to_message


def test_logs_never_carry_secrets() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        structlog.get_logger("t").info(
            "worker_starting",
            dsn="postgresql://wahook:s3cr3t@db:5432/whatsapp_db",
            app_secret="abc",
            verify_token="tok",
            nested={"password": "p", "url": "https://u:pw@host/x"},
        )
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    event = json.loads(line)
    assert event["event"] == "worker_starting"
    for secret in ("s3cr3t", '"abc"', '"tok"', '"p"', "pw@"):
        assert secret not in line
    assert event["dsn"] == "postgresql://wahook:***@db:5432/whatsapp_db"


def test_redact_text_keeps_urls_without_password() -> None:
    assert redact_text("postgresql://postgres@127.0.0.1/db") == "postgresql://postgres@127.0.0.1/db"


async def test_file_source_reads_files_dirs_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.json").write_bytes(body(1))
    (tmp_path / "d" / "skip.txt").write_bytes(b"ignored in a directory")
    (tmp_path / "many.jsonl").write_bytes(body(2) + b"\n\n" + body(3) + b"\r\n")
    stdin = io.BytesIO(body(4) + b"\n")
    source = FileSource(
        [str(tmp_path / "d"), str(tmp_path / "many.jsonl"), "-"], batch_max=2, stdin=stdin
    )
    batches = [batch async for batch in source]
    ids = [m.id for batch in batches for m in batch]
    assert ids == [
        str(tmp_path / "d" / "one.json"),
        f"{tmp_path / 'many.jsonl'}:1",
        f"{tmp_path / 'many.jsonl'}:3",
        "stdin:1",
    ]
    assert [len(b) for b in batches] == [2, 2]
    assert batches[1][1].body == body(4)


def test_sqs_message_mapping() -> None:
    m = to_message(
        "id",
        body(1).decode(),
        {"SentTimestamp": "1700000000500", "MessageGroupId": "g"},
        {"other": {"StringValue": "x", "DataType": "String"}},
    )
    assert (m.body, m.received_at, m.group) == (body(1), 1700000000.5, "g")
    broken = to_message(
        "id", "%%%", {}, {"content_encoding": {"StringValue": "base64", "DataType": "String"}}
    )
    assert broken.body == b"%%%"  # kept, so it is quarantined rather than lost


async def test_inprocess_backpressure_and_close() -> None:
    source = InProcessSource(maxsize=2)
    source.put_nowait(body(1))
    source.put_nowait(body(2))
    with pytest.raises(asyncio.QueueFull):
        source.put_nowait(body(3))
    source.close()
    with pytest.raises(RuntimeError):
        await source.put(body(4))
    assert [m.body for m in await source.next_batch() or []] == [body(1), body(2)]
    assert await source.next_batch() is None


def test_retry_policy_is_capped_and_gives_up() -> None:
    policy = RetryPolicy(first=0.1, cap=2.0, give_up_after=30)
    assert policy.delay(0, 0.999) < 0.1
    assert policy.delay(50, 0.999) <= 2.0
    assert policy.delay(50, 0.0) == 1.0
    assert not policy.exhausted(3, 29.9)
    assert policy.exhausted(3, 30)
    assert not RetryPolicy(give_up_after=None).exhausted(10**6, 10**6)


def test_prometheus_observer_counts_events_and_unknown_types() -> None:
    from prometheus_client import generate_latest

    from wahook.runtime.metrics import PrometheusObserver
    from wahook.runtime.pipeline import to_record
    from wahook.runtime.source import Message
    from wahook.sinks.base import WriteResult

    observer = PrometheusObserver()
    record = to_record(Message(id="m", body=body(1, statuses=2)), observer)
    odd = body(2).replace(b'"delivered"', b'"teleported"')
    unknown = to_record(Message(id="n", body=odd), observer)
    observer.committed([record, unknown], WriteResult(applied=3), 0.01)
    observer.retried("transient")
    observer.gave_up("transient", 2)
    text = generate_latest(observer.registry).decode()
    assert 'wahook_events_total{kind="status",type="delivered"} 2.0' in text
    assert 'wahook_events_total{kind="status",type="unknown"} 1.0' in text
    assert 'wahook_unknown_total{label="status:teleported"} 1.0' in text
    assert 'wahook_failures_total{class="transient"} 2.0' in text
    assert "wahook_commit_seconds_count 1.0" in text


class FlakySqs:
    """An SQS client double: the first receive fails, visibility changes always fail."""

    def __init__(self) -> None:
        self.receives = 0
        self.deleted: list[str] = []

    async def get_queue_attributes(self, **kw: object) -> dict[str, dict[str, str]]:
        return {"Attributes": {"VisibilityTimeout": "1"}}

    async def receive_message(self, **kw: object) -> dict[str, list[dict[str, str]]]:
        self.receives += 1
        if self.receives == 1:
            raise ConnectionResetError("connection reset by peer")
        return {
            "Messages": [
                {"MessageId": f"m{self.receives}", "ReceiptHandle": f"r{self.receives}",
                 "Body": body(self.receives).decode()}
            ]
        }  # fmt: skip

    async def delete_message_batch(self, **kw: object) -> dict[str, list[object]]:
        self.deleted += [e["ReceiptHandle"] for e in kw["Entries"]]  # type: ignore[attr-defined]
        return {"Successful": [], "Failed": []}

    async def change_message_visibility_batch(self, **kw: object) -> None:
        raise TimeoutError("SQS did not answer")


async def test_sqs_source_survives_receive_and_heartbeat_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wahook.runtime import sqs_poll

    monkeypatch.setattr(sqs_poll, "RECEIVE_BACKOFF_CAP", 0.01)
    client = FlakySqs()
    async with sqs_poll.SqsSource("https://queue", client=client) as source:
        assert await source.next_batch() == []  # the failure: logged, paused, no messages
        [message] = await source.next_batch() or []
        heartbeat = asyncio.create_task(source.side_tasks()["heartbeat"])
        await asyncio.sleep(0.8)  # beats every 0.25 s; each one fails
        assert not heartbeat.done()
        heartbeat.cancel()
        await source.settle([message], failed=())
    assert client.deleted == ["r2"]


async def test_a_signal_sets_the_stop_event_and_handlers_are_removed_after() -> None:
    import os
    import signal

    from wahook.runtime.signals import stop_on_signals

    stop = asyncio.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
    assert stop.is_set()
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


@pytest.mark.parametrize("command", ["worker", "replay"])
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from wahook.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"wahook {command}" in capsys.readouterr().out.split("examples:")[1]


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from wahook.cli import build_parser
    from wahook.runtime.commands import _settings

    monkeypatch.setenv("WAHOOK_BATCH_SIZE", "10")
    monkeypatch.setenv("SQS_QUEUE_URL", "https://sqs.example/1/q")
    args = build_parser().parse_args(["worker", "--batch-size", "20", "--receivers", "8"])
    try:
        settings = _settings(args)
    finally:
        structlog.reset_defaults()
    assert (settings.batch_size, settings.sqs_receivers) == (20, 8)
    assert settings.queue_url == "https://sqs.example/1/q"
