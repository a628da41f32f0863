"""``wahook dev aws``: the two-queue architecture's AWS side on this machine.

moto's server (SQS, CloudWatch, CloudWatch Logs ... all on one port) bound to a loopback
address, with the queue and its dead-letter queue created and wired by a redrive policy as
the deployment template wires them. Clients pointed at a loopback endpoint get placeholder
credentials when none are set (``wahook.settings.aws_client_args``), so nothing looks for
real ones, and nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from typing import Any

from wahook.settings import aws_client_args, is_loopback_url

REGION = "us-east-1"
MAX_RECEIVE_COUNT = 5
"""Receives before a message moves to the dead-letter queue (AWS advises ≥ 5 for Lambda)."""
VISIBILITY_TIMEOUT = 60
RETENTION = 14 * 24 * 3600  # the most SQS keeps: outlives Meta's retries


@dataclasses.dataclass(frozen=True, slots=True)
class LocalAws:
    endpoint: str
    queue_url: str
    dlq_url: str


def create_queues(endpoint: str, name: str = "wahook") -> LocalAws:
    """``name`` and ``name-dlq`` on ``endpoint``, the first redriving to the second."""
    import botocore.session

    sqs = botocore.session.get_session().create_client("sqs", **aws_client_args(REGION, endpoint))
    try:
        dlq = sqs.create_queue(
            QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": str(RETENTION)}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        policy = {"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
        queue = sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_TIMEOUT),
                "MessageRetentionPeriod": str(RETENTION),
                "RedrivePolicy": json.dumps(policy),
            },
        )["QueueUrl"]
    finally:
        sqs.close()
    return LocalAws(endpoint, str(queue), str(dlq))


def start_moto(host: str, port: int) -> tuple[Any, str]:
    """moto's server in this process, on ``host:port`` (loopback only)."""
    endpoint = f"http://{host}:{port}"
    if not is_loopback_url(endpoint):
        raise ValueError(f"{host} is not a loopback address: local AWS stays on this machine")
    try:
        from moto.server import ThreadedMotoServer
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "moto is not installed: pip install 'wahook[localaws]'", name="moto"
        ) from None
    # Its access log would bury the banner: one line per SQS call.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server, endpoint


def banner(aws: LocalAws, dsn: str | None) -> list[str]:
    db = dsn or "postgresql://postgres@127.0.0.1:5432/whatsapp_db"
    return [
        f"local AWS (moto) on {aws.endpoint}: SQS, CloudWatch, Logs; nothing leaves this machine",
        f"  queue:              {aws.queue_url}",
        f"  dead-letter queue:  {aws.dlq_url}  (after {MAX_RECEIVE_COUNT} receives)",
        "",
        "in other terminals (a non-AWS queue URL is its own endpoint):",
        f"  wahook migrate --dsn {db}",
        f"  wahook worker --queue-url {aws.queue_url} --dsn {db}",
        f"  wahook serve --queue-url {aws.queue_url}",
        "  wahook post --sample",
        f"  wahook check http://127.0.0.1:8080/webhook --dsn {db} --queue-url {aws.queue_url}",
        f"  wahook queue status --queue-url {aws.queue_url}",
        "",
        "stop with Ctrl-C (moto keeps everything in memory: the queues go with it)",
    ]


def run(host: str, port: int, dsn: str | None, print_line: Any) -> None:
    """Start, create, print, and wait for Ctrl-C or SIGTERM."""
    import signal

    server, endpoint = start_moto(host, port)
    stop = threading.Event()
    # Both handled here: a shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        for line in banner(create_queues(endpoint), dsn):
            print_line(line)
        while not stop.wait(3600):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
