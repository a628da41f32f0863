"""SQS through moto's server mode, on 127.0.0.1 only.

``sqs_endpoint`` (session): one moto server process on a free loopback port, with fake
credentials in the environment (subprocesses inherit them). ``sqs_queue``: a factory that
creates a fresh queue per call (unique name per test) and returns its URL. ``sqs_client``:
a synchronous botocore client for arranging and inspecting queues.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest

REGION = "us-east-1"
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
_names = itertools.count(1)


# Two fixes to moto's SQS for the server process, behaviour otherwise unchanged:
# - speed: it asks the clock through datetime (~20 µs a call) for every message of the queue
#   on every call, and recomputes all queue attributes for every message received; fine
#   for a dozen messages, minutes for the thousands these tests move;
# - a race: ``Queue.delete_message`` rebuilds the message list without the lock that
#   ``add_message`` takes, so concurrent deletes (or a send) undo each other and deleted
#   messages come back after their visibility timeout.
_MOTO_LAUNCHER = """
import sys, time
import moto.sqs.models as m
m.unix_time = time.time
m.unix_time_millis = lambda: time.time() * 1000
def _retained(self, queue_name, message):
    period = int(self.get_queue(queue_name).message_retention_period)
    return period + message.sent_timestamp / 1000 > time.time()
# Only what this moto has: a newer one may have fixed or renamed these.
if hasattr(m.SQSBackend, "is_message_valid_based_on_retention_period"):
    m.SQSBackend.is_message_valid_based_on_retention_period = _retained
_delete = getattr(m.Queue, "delete_message", None)
def _locked_delete(self, receipt_handle):
    with self._messages_lock:
        _delete(self, receipt_handle)
if _delete is not None and hasattr(m.Queue, "add_message"):
    m.Queue.delete_message = _locked_delete
from moto.server import main
main(sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A (patched) moto server process on a free 127.0.0.1 port; yields its endpoint."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _MOTO_LAUNCHER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("moto server exited at start") from None
                time.sleep(0.05)
        else:
            raise RuntimeError("moto server did not answer")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """moto's server in its own process (its queues cost O(length) per call in Python, so
    sharing the tests' interpreter and GIL would slow both), on 127.0.0.1 only."""
    saved = {k: os.environ.get(k) for k in _FAKE_AWS}
    os.environ.update(_FAKE_AWS)
    try:
        with moto_server() as endpoint:
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sqs_client(sqs_endpoint: str) -> Iterator[Any]:
    client = botocore.session.get_session().create_client(
        "sqs", region_name=REGION, endpoint_url=sqs_endpoint
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def sqs_queue(sqs_client: Any, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``sqs_queue(visibility_timeout=30, fifo=False, max_receive=None)`` -> queue URL. With
    ``max_receive``, a dead-letter queue is created and wired by a redrive policy."""

    def make(
        visibility_timeout: int = 30, fifo: bool = False, max_receive: int | None = None
    ) -> str:
        base = f"{request.node.name[:40]}-{os.getpid()}-{next(_names)}"
        base = "".join(c if c.isalnum() or c in "-_" else "-" for c in base)
        attributes = {"VisibilityTimeout": str(visibility_timeout)}
        if fifo:
            attributes["FifoQueue"] = "true"
        if max_receive is not None:
            dlq = sqs_client.create_queue(
                QueueName=f"{base}-dlq" + (".fifo" if fifo else ""),
                Attributes={"FifoQueue": "true"} if fifo else {},
            )["QueueUrl"]
            arn = sqs_client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
                    "maxReceiveCount": str(max_receive),
                }
            )
        name = base + (".fifo" if fifo else "")
        return str(sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

    return make


def queue_counts(client: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def send_bodies(
    client: Any,
    url: str,
    bodies: list[bytes],
    *,
    backlog: int | None = None,
    verdict: str | None = "any",
    **extra: Any,
) -> list[str]:
    """Send bodies 10 per call; returns the message ids in order. With ``backlog``, wait
    while the queue holds more than that many messages (moto's calls cost O(queue length),
    so a test that sends while a worker consumes keeps the queue short). ``verdict`` is
    the tenancy verdict attribute the receiver would have set (``any``: signed with the
    deployment-wide secret; None: a message queued without one)."""
    if verdict is not None:
        extra.setdefault(
            "MessageAttributes", {"verdict": {"DataType": "String", "StringValue": verdict}}
        )
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        if backlog is not None and start % 100 == 0:
            while sum(queue_counts(client, url)) > backlog:
                time.sleep(0.05)
        entries = [
            {"Id": str(i), "MessageBody": b.decode(), **extra}
            for i, b in enumerate(bodies[start : start + 10])
        ]
        response = client.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]
        by_id = {s["Id"]: s["MessageId"] for s in response["Successful"]}
        ids += [by_id[str(i)] for i in range(len(entries))]
    return ids
