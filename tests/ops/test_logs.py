"""`wahook logs` against moto's CloudWatch Logs: the right group, the filter, follow without
repeats, Ctrl-C, masked secrets."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest

from tests.ops.helpers import WAHOOK, background, cli_env, read_until, run
from tests.plugins.sqs import REGION

SECRET = "s3cret-app-Value-77"
_groups = itertools.count()


@pytest.fixture
def logs(sqs_endpoint: str) -> Iterator[Any]:
    client = botocore.session.get_session().create_client(
        "logs", region_name=REGION, endpoint_url=sqs_endpoint
    )
    yield client
    client.close()


def make_group(logs: Any) -> tuple[str, str]:
    function = f"wahook-processor-test-{os.getpid()}-{next(_groups)}"
    group = f"/aws/lambda/{function}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/12/02/[$LATEST]abc")
    return function, group


def put(logs: Any, group: str, *messages: str) -> None:
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2026/12/02/[$LATEST]abc",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)],
    )


def test_recent_events_filtered_and_masked(logs: Any, sqs_endpoint: str) -> None:
    function, group = make_group(logs)
    put(
        logs,
        group,
        "START RequestId: 1",
        f"ERROR batch_failed secret={SECRET}",
        "INFO batch_committed rows=5",
        "ERROR sink_retry dsn=postgresql://u:pw123456@db/x",
    )
    env = cli_env(WEBHOOK_SECRET=SECRET, AWS_ENDPOINT_URL=sqs_endpoint)
    out = run("logs", "processor", "--function", function, "--filter", "ERROR", env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    assert "ERROR batch_failed secret=***" in lines[0]
    assert "postgresql://u:***@db/x" in lines[1]
    assert SECRET not in out.stdout + out.stderr
    assert "pw123456" not in out.stdout
    assert "[$LATEST]abc" in lines[0]
    # The group from the environment, by function name or by log group name.
    by_env = run("logs", "processor", env={**env, "WAHOOK_PROCESSOR_FUNCTION": function})
    assert by_env.returncode == 0
    assert len(by_env.stdout.splitlines()) == 4
    by_group = run("logs", "processor", env={**env, "WAHOOK_PROCESSOR_LOG_GROUP": group})
    assert by_group.stdout == by_env.stdout


def test_no_group_named_is_a_usage_error() -> None:
    out = run("logs", "receiver", env=cli_env())
    assert out.returncode == 2
    assert "WAHOOK_RECEIVER_LOG_GROUP" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_group_is_reported_as_unreachable(sqs_endpoint: str) -> None:
    out = run(
        "logs",
        "receiver",
        "--log-group",
        "/aws/lambda/none-such",
        "--endpoint-url",
        sqs_endpoint,
        env=cli_env(),
    )
    assert out.returncode == 3
    assert "ResourceNotFoundException" in out.stderr
    assert "Traceback" not in out.stderr


def test_follow_prints_each_new_event_once_and_stops(logs: Any, sqs_endpoint: str) -> None:
    _, group = make_group(logs)
    put(logs, group, "old 1", "old 2")
    argv = [
        WAHOOK,
        "logs",
        "receiver",
        "--log-group",
        group,
        "--follow",
        "--poll",
        "0.2",
        "--for",
        "30",
        "--endpoint-url",
        sqs_endpoint,
    ]
    with background(argv, cli_env()) as proc:
        seen = read_until(proc, "old 2")
        for i in range(3):
            put(logs, group, f"new {i}a", f"new {i}b")
            time.sleep(0.5)
        seen += read_until(proc, "new 2b")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    printed = [line.rsplit(" ", 1)[1] for line in (seen + out.decode()).splitlines()]
    assert printed == ["1", "2", "0a", "0b", "1a", "1b", "2a", "2b"]
    assert b"Traceback" not in err
    assert f"events from {group}".encode() in err


def test_follow_stops_after_its_bound(logs: Any, sqs_endpoint: str) -> None:
    _, group = make_group(logs)
    put(logs, group, "one", "two")
    started = time.monotonic()
    out = subprocess.run(
        [
            WAHOOK,
            "logs",
            "processor",
            "--log-group",
            group,
            "--follow",
            "--poll",
            "0.2",
            "--for",
            "1",
            "--endpoint-url",
            sqs_endpoint,
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert [line.rsplit(" ", 1)[1] for line in out.stdout.splitlines()] == ["one", "two"]
    assert time.monotonic() - started < 30  # the 1 s bound honoured (startup aside)
