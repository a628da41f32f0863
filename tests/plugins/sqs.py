"""SQS through moto's server mode, on 127.0.0.1 only.

``sqs_endpoint`` (session): one ``ThreadedMotoServer`` on a free loopback port, with fake
credentials in the environment (subprocesses inherit them). ``sqs_queue``: a factory that
creates a fresh queue per call (unique name per test) and returns its URL. ``sqs_client``:
a synchronous botocore client for arranging and inspecting queues.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
_names = itertools.count(1)


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    saved = {k: os.environ.get(k) for k in _FAKE_AWS}
    os.environ.update(_FAKE_AWS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
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


def send_bodies(client: Any, url: str, bodies: list[bytes], **extra: Any) -> list[str]:
    """Send bodies 10 per call; returns the message ids in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": b.decode(), **extra}
            for i, b in enumerate(bodies[start : start + 10])
        ]
        response = client.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]
        by_id = {s["Id"]: s["MessageId"] for s in response["Successful"]}
        ids += [by_id[str(i)] for i in range(len(entries))]
    return ids
