"""``wahook queue status`` and ``wahook queue redrive``.

Status reads queue attributes and CloudWatch's ``ApproximateAgeOfOldestMessage``; it never
receives a message, since every receive counts toward the dead-letter limit.

Redrive moves dead-letter messages back to their source queue: each message is sent (body
and every message attribute, as received) and deleted from the dead-letter queue only once
the source queue has accepted its copy. A copy that is refused leaves its original where it
was, visible again at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from wahook.errors import ConfigError
from wahook.ops.aws import client, describe, queue_name
from wahook.settings import Settings

AGE_WINDOW = dt.timedelta(minutes=15)
"""How far back to look for the age metric: SQS publishes it every minute while active."""

RECEIVE_VISIBILITY = 60
"""Seconds a dead-letter message is hidden while its copy is sent."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueueFigures:
    url: str
    visible: int
    in_flight: int
    delayed: int
    oldest_age: float | None  # seconds, from CloudWatch; None: no datapoint in the window

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStatus:
    queue: QueueFigures
    dead_letter: QueueFigures | None
    max_receive_count: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue.as_dict(),
            "dead_letter": self.dead_letter.as_dict() if self.dead_letter else None,
            "max_receive_count": self.max_receive_count,
        }

    def problems(self, max_age: float | None) -> list[str]:
        """What a deploy script should stop on: a dead-letter queue holding messages, or
        (with ``max_age``) a message older than that waiting in the queue."""
        found = []
        if self.dead_letter is not None and self.dead_letter.visible + self.dead_letter.in_flight:
            n = self.dead_letter.visible + self.dead_letter.in_flight
            found.append(f"{n} messages in the dead-letter queue")
        if max_age is not None and (self.queue.oldest_age or 0) > max_age:
            found.append(f"oldest message {self.queue.oldest_age:g} s old (> {max_age:g} s)")
        return found


async def dead_letter_url(sqs: Any, queue_url: str) -> tuple[str | None, int | None]:
    """The dead-letter queue URL and maxReceiveCount from ``queue_url``'s redrive policy."""
    response = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    attrs = response.get("Attributes", {})  # absent altogether when the queue has no policy
    if "RedrivePolicy" not in attrs:
        return None, None
    policy = json.loads(attrs["RedrivePolicy"])
    # arn:aws:sqs:<region>:<account>:<name>
    *_, account, name = policy["deadLetterTargetArn"].split(":")
    url = (await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account))["QueueUrl"]
    return str(url), int(policy["maxReceiveCount"])


async def _figures(sqs: Any, cloudwatch: Any, url: str, now: dt.datetime) -> QueueFigures:
    attrs = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
    ).get("Attributes", {})
    stats = await cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue_name(url)}],
        StartTime=now - AGE_WINDOW,
        # Past now: the current minute's datapoint is in a period that has not ended.
        EndTime=now + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )
    points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return QueueFigures(
        url=url,
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        oldest_age=float(points[-1]["Maximum"]) if points else None,
    )


async def queue_status(
    settings: Settings, queue_url: str, dlq_url: str | None = None
) -> QueueStatus:
    now = dt.datetime.now(dt.UTC)
    async with (
        client(settings, "sqs", queue_url) as sqs,
        client(settings, "cloudwatch", queue_url) as cloudwatch,
    ):
        found_dlq, max_receive = await dead_letter_url(sqs, queue_url)
        dlq_url = dlq_url or found_dlq
        queue = await _figures(sqs, cloudwatch, queue_url, now)
        dead = await _figures(sqs, cloudwatch, dlq_url, now) if dlq_url else None
    return QueueStatus(queue, dead, max_receive)


def format_status(status: QueueStatus) -> list[str]:
    def age(seconds: float | None) -> str:
        if seconds is None:
            return "no CloudWatch datapoint in the last 15 min"
        return f"{seconds:g} s"

    lines = []
    for label, f in (("queue", status.queue), ("dead-letter queue", status.dead_letter)):
        if f is None:
            lines.append(f"{label}: none (the queue has no redrive policy; give --dlq-url)")
            continue
        lines += [
            f"{label}: {f.url}",
            f"  visible (depth)    {f.visible}",
            f"  in flight          {f.in_flight}",
            f"  delayed            {f.delayed}",
            f"  oldest message     {age(f.oldest_age)}",
        ]
    if status.max_receive_count is not None:
        lines.append(f"max receive count:  {status.max_receive_count}")
    return lines


# --- redrive --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class RedriveResult:
    moved: int = 0
    failed: int = 0
    would_move: int = 0
    reason: str | None = None  # why the source queue refused copies, if it did


async def _visible(sqs: Any, url: str) -> int:
    attrs = await sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))


def _copy(message: dict[str, Any], index: int, fifo: bool) -> dict[str, Any]:
    """A ``SendMessageBatch`` entry carrying the message's body and every attribute."""
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
    attributes = {
        name: {k: v for k, v in value.items() if v not in ([], None)}
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    if attributes:
        entry["MessageAttributes"] = attributes
    if fifo:
        entry["MessageGroupId"] = message["Attributes"]["MessageGroupId"]
        # Not the original deduplication id: a message that failed within SQS's 5-minute
        # window would be "accepted" as a duplicate and dropped, then deleted here. One per
        # dead-letter message instead, so a redrive repeated after a failed delete dedupes.
        entry["MessageDeduplicationId"] = f"redrive-{message['MessageId']}"
    return entry


async def redrive(
    settings: Settings,
    queue_url: str,
    dlq_url: str | None = None,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Callable[[RedriveResult], None] | None = None,
) -> RedriveResult:
    """Move up to ``limit`` dead-letter messages back to ``queue_url``; ``dry_run`` counts
    them only (without receiving any)."""
    from botocore.exceptions import ClientError

    result = RedriveResult()
    async with client(settings, "sqs", queue_url) as sqs:
        if dlq_url is None:
            dlq_url, _ = await dead_letter_url(sqs, queue_url)
            if dlq_url is None:
                raise ConfigError(f"{queue_url} has no redrive policy: give --dlq-url")
        if dry_run:
            n = await _visible(sqs, dlq_url)
            result.would_move = n if limit is None else min(n, limit)
            return result
        fifo = queue_url.endswith(".fifo")
        empty_receives = 0
        while (limit is None or result.moved + result.failed < limit) and empty_receives < 3:
            want = 10 if limit is None else min(10, limit - result.moved - result.failed)
            received = await sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=want,
                WaitTimeSeconds=1,
                VisibilityTimeout=RECEIVE_VISIBILITY,
                MessageAttributeNames=["All"],
                AttributeNames=["MessageGroupId"],
            )
            messages = received.get("Messages", [])
            if not messages:
                # A long poll can come back empty while messages remain (SQS samples its
                # servers): ask the queue before giving up.
                empty_receives += 1
                if await _visible(sqs, dlq_url) == 0:
                    break
                continue
            empty_receives = 0
            try:
                sent = await sqs.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=[_copy(m, i, fifo) for i, m in enumerate(messages)],
                )
            except ClientError as exc:  # the whole batch refused (too long, no such queue)
                sent = {"Failed": [{"Id": str(i), "Message": describe(exc)}
                                   for i in range(len(messages))]}  # fmt: skip
            accepted = {int(s["Id"]) for s in sent.get("Successful", [])}
            if sent.get("Failed"):
                result.reason = str(sent["Failed"][0].get("Message") or sent["Failed"][0])
            done = [m for i, m in enumerate(messages) if i in accepted]
            refused = [m for i, m in enumerate(messages) if i not in accepted]
            if done:
                await sqs.delete_message_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
            if refused:
                # Visible again at once, for the next redrive (or a look by hand).
                await sqs.change_message_visibility_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(refused)
                    ],
                )
            result.moved += len(done)
            result.failed += len(refused)
            if progress is not None:
                progress(result)
            if refused:
                break  # the source queue refuses copies: stop rather than spin on them
    return result
