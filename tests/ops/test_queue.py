"""`wahook queue status` and `wahook queue redrive` against moto's server (SQS, CloudWatch)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ops.helpers import cli_env, dlq_of, run
from tests.plugins.sqs import REGION, queue_counts
from wahook.ops.queue import redrive
from wahook.settings import Settings


@pytest.fixture
def cloudwatch(sqs_endpoint: str) -> Any:
    client = botocore.session.get_session().create_client(
        "cloudwatch", region_name=REGION, endpoint_url=sqs_endpoint
    )
    yield client
    client.close()


def test_status_reports_depths_and_cloudwatch_age(
    sqs_client: Any, sqs_queue: Callable[..., str], cloudwatch: Any
) -> None:
    url = sqs_queue(max_receive=5)
    dlq = dlq_of(sqs_client, url)
    for i in range(3):
        sqs_client.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs_client.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    sqs_client.send_message(QueueUrl=dlq, MessageBody="dead")
    name = url.rsplit("/", 1)[1]
    now = dt.datetime.now(dt.UTC)
    cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Value": v,
                "Unit": "Seconds",
                "Timestamp": now - dt.timedelta(minutes=m),
                "Dimensions": [{"Name": "QueueName", "Value": name}],
            }
            for v, m in ((40.0, 5), (725.0, 1))
        ],
    )
    env = cli_env()  # the sqs fixture's placeholder credentials, no endpoint setting
    out = run("queue", "status", "--queue-url", url, "--json", env=env)
    assert out.returncode == 1, out.stderr  # the dead-letter queue holds a message
    status = json.loads(out.stdout)
    assert status["queue"] == {
        "url": url,
        "visible": 2,
        "in_flight": 1,
        "delayed": 1,
        "oldest_age": 725.0,
    }
    assert status["dead_letter"]["url"] == dlq
    assert status["dead_letter"]["visible"] == 1
    assert status["dead_letter"]["oldest_age"] is None
    assert status["max_receive_count"] == 5
    assert status["problems"] == ["1 messages in the dead-letter queue"]
    # Status never receives: nothing became in flight, no receive count moved.
    assert queue_counts(sqs_client, url) == (2, 1)
    assert queue_counts(sqs_client, dlq) == (1, 0)

    text = run("queue", "status", "--queue-url", url, env=env)
    assert "oldest message     725 s" in text.stdout
    assert "unhealthy: 1 messages in the dead-letter queue" in text.stdout


def test_status_healthy_then_too_old(sqs_queue: Callable[..., str], cloudwatch: Any) -> None:
    url = sqs_queue(max_receive=5)
    env = cli_env()
    assert run("queue", "status", "--queue-url", url, env=env).returncode == 0
    cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Value": 301.0,
                "Dimensions": [{"Name": "QueueName", "Value": url.rsplit("/", 1)[1]}],
            }
        ],
    )
    out = run("queue", "status", "--queue-url", url, "--max-age", "300", env=env)
    assert out.returncode == 1
    assert "oldest message 301 s old (> 300 s)" in out.stdout


def test_status_exit_codes_for_usage_and_unreachable(
    sqs_endpoint: str, sqs_queue: Callable[..., str]
) -> None:
    env = cli_env()
    plain = sqs_queue()  # no redrive policy
    status = run("queue", "status", "--queue-url", plain, env=env)
    assert status.returncode == 0, status.stderr
    assert "dead-letter queue: none (the queue has no redrive policy" in status.stdout
    redrive = run("queue", "redrive", "--queue-url", plain, env=env)
    assert redrive.returncode == 2
    assert "has no redrive policy: give --dlq-url" in redrive.stderr
    missing = run("queue", "status", env=env)
    assert missing.returncode == 2
    assert "--queue-url" in missing.stderr
    no_queue = run("queue", "status", "--queue-url", f"{sqs_endpoint}/123456789012/nope", env=env)
    assert no_queue.returncode == 3
    assert "Traceback" not in no_queue.stderr
    assert no_queue.stderr.count("\n") == 1


ATTRIBUTE = st.one_of(
    st.builds(
        lambda v: {"DataType": "String", "StringValue": v},
        st.text(
            st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
        ),
    ),
    st.builds(
        lambda v: {"DataType": "Number", "StringValue": str(v)}, st.integers(-(10**9), 10**9)
    ),
    st.builds(
        lambda v: {"DataType": "Binary", "BinaryValue": v}, st.binary(min_size=1, max_size=20)
    ),
)
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda n: not n.startswith(("aws", "amazon"))
)


@pytest.mark.slow
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.dictionaries(NAMES, ATTRIBUTE, max_size=6), min_size=1, max_size=14))
def test_redrive_copies_bodies_and_every_attribute(
    sqs_client: Any, sqs_queue: Callable[..., str], messages: list[dict[str, Any]]
) -> None:
    url = sqs_queue(max_receive=5)
    dlq = dlq_of(sqs_client, url)
    sent = []
    for i, attributes in enumerate(messages):
        body = f'{{"n": {i}}}'
        sqs_client.send_message(
            QueueUrl=dlq,
            MessageBody=body,
            **({"MessageAttributes": attributes} if attributes else {}),
        )
        sent.append((body, attributes))
    # In-process (the CLI's statuses and output are tested below): fast enough for examples.
    config = Settings(queue_url=url)  # a moto queue URL names its own endpoint
    dry = asyncio.run(redrive(config, url, dry_run=True))
    assert dry.would_move == len(messages)
    assert queue_counts(sqs_client, dlq) == (len(messages), 0)  # a dry run receives nothing

    seen: list[int] = []
    done = asyncio.run(redrive(config, url, progress=lambda r: seen.append(r.moved)))
    assert (done.moved, done.failed) == (len(messages), 0)
    assert seen[-1] == len(messages)
    assert seen == sorted(seen)
    assert queue_counts(sqs_client, dlq) == (0, 0)
    got = []
    while True:
        r = sqs_client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        if not r.get("Messages"):
            break
        for m in r["Messages"]:
            attrs = {
                k: {f: v for f, v in a.items() if v not in ([], None)}
                for k, a in m.get("MessageAttributes", {}).items()
            }
            got.append((m["Body"], attrs))
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(got, key=repr) == sorted(sent, key=repr)


def test_redrive_limit_and_refused_copies_stay(
    sqs_client: Any, sqs_queue: Callable[..., str]
) -> None:
    url = sqs_queue(max_receive=5)
    dlq = dlq_of(sqs_client, url)
    for i in range(25):
        sqs_client.send_message(QueueUrl=dlq, MessageBody=f"small {i}")
    env = cli_env()
    dry = run("queue", "redrive", "--queue-url", url, "--dry-run", "--limit", "20", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: would move 20 messages" in dry.stdout
    out = run("queue", "redrive", "--queue-url", url, "--limit", "12", env=env)
    assert out.returncode == 0, out.stderr
    assert "redrive: 12 messages moved" in out.stdout
    assert "redrive: 10 moved, 0 refused" in out.stderr  # progress, one line a batch
    assert queue_counts(sqs_client, url) == (12, 0)
    assert queue_counts(sqs_client, dlq) == (13, 0)

    # A source queue that refuses the copies: the originals stay, visible, and the exit
    # status says so.
    sqs_client.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})
    big = sqs_queue(max_receive=5)
    big_dlq = dlq_of(sqs_client, big)
    sqs_client.send_message(QueueUrl=big_dlq, MessageBody="x" * 2000)
    refused = run("queue", "redrive", "--queue-url", url, "--dlq-url", big_dlq, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "0 messages moved" in refused.stdout
    assert "1 refused" in refused.stdout
    assert "shorter than 1024 bytes" in refused.stdout
    assert queue_counts(sqs_client, big_dlq) == (1, 0)


def test_redrive_fifo_keeps_groups(sqs_client: Any, sqs_queue: Callable[..., str]) -> None:
    url = sqs_queue(fifo=True, max_receive=5)
    dlq = dlq_of(sqs_client, url)
    for i, group in enumerate(["106540352242922", "106540352242922", "999"]):
        # The same deduplication id the original send used, as a redrive-by-hand would copy.
        sqs_client.send_message(
            QueueUrl=url,
            MessageBody=f"b{i}",
            MessageGroupId=group,
            MessageDeduplicationId=f"sha{i}",
        )
        sqs_client.send_message(
            QueueUrl=dlq,
            MessageBody=f"b{i}",
            MessageGroupId=group,
            MessageDeduplicationId=f"sha{i}",
        )
    while (got := sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)).get("Messages"):
        for m in got["Messages"]:
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    out = run("queue", "redrive", "--queue-url", url, env=cli_env(WAHOOK_DLQ_URL=dlq))
    assert out.returncode == 0, out.stderr
    assert "3 messages moved" in out.stdout
    moved = []
    while (
        got := sqs_client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
        )
    ).get("Messages"):
        for m in got["Messages"]:
            moved.append((m["Body"], m["Attributes"]["MessageGroupId"]))
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(moved) == [("b0", "106540352242922"), ("b1", "106540352242922"), ("b2", "999")]
    assert queue_counts(sqs_client, dlq) == (0, 0)


def test_fifo_copy_gets_its_own_deduplication_id() -> None:
    """A FIFO message that failed within SQS's 5-minute deduplication window would be
    "accepted" as a duplicate of itself and dropped, then deleted from the DLQ, if its copy
    kept the original id. (moto does not enforce the window, so this is checked here.)"""
    from wahook.ops.queue import _copy

    message = {
        "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
        "Body": "{}",
        "Attributes": {"MessageGroupId": "g1", "MessageDeduplicationId": "sha0"},
        "MessageAttributes": {
            "part": {
                "DataType": "String",
                "StringValue": "1/2",
                "StringListValues": [],
                "BinaryListValues": [],
            }
        },
    }
    entry = _copy(message, 3, fifo=True)
    assert entry == {
        "Id": "3",
        "MessageBody": "{}",
        "MessageGroupId": "g1",
        "MessageDeduplicationId": "redrive-5fea7756-0ea4-451a-a703-a558b933e274",
        "MessageAttributes": {"part": {"DataType": "String", "StringValue": "1/2"}},
    }
    assert "MessageGroupId" not in _copy(message, 0, fifo=False)
