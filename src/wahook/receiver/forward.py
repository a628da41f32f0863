"""Forwarding accepted bodies to Amazon SQS.

The raw body is the message body; attributes say what it holds without decoding it:
``verdict`` (whose items it may carry: ``any`` or organization ids, ``wahook.verdict``;
never cut), ``waba_id``, ``phone_number_id``, ``field`` (comma-separated when several),
``counts`` (``changes=N,messages=N,statuses=N``), ``body_sha256`` (of the body as
received), ``received_at`` (ISO 8601, UTC), and when relevant ``part`` (``i/n``),
``problem`` (why the body is not a WhatsApp notification) and ``content_encoding``
(``base64`` for a body SQS cannot carry as text: not UTF-8, or holding characters SQS
refuses). That is 9 attributes at most: SQS takes 10 per message.

A body larger than one message allows is split per change (``envelope.split``) into several
notifications sent with ``SendMessageBatch`` (10 entries and ``max_message_bytes`` per call).
Entries SQS reports failed are sent again; ``send`` returns only when SQS accepted every part
and raises ``ForwardError`` otherwise, so the receiver answers 503 and Meta retries. Parts
already queued then arrive twice: the sink is idempotent, so that is harmless.

Two senders share the planning: ``SyncForwarder`` (botocore client, the Lambda handler) and
``AsyncForwarder`` (aiobotocore client, ``wahook serve``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import time
from collections.abc import Iterator
from typing import Any

from wahook.errors import WahookError
from wahook.receiver.core import Accepted
from wahook.receiver.envelope import Summary, Unsplittable, split, summarize
from wahook.verdict import Verdict

SQS_MAX_MESSAGE_BYTES = 256 * 1024
"""The message size every SQS queue accepts. Queues created since August 2025 take up to
1 MiB; raise ``max_message_bytes`` to match a queue's ``MaximumMessageSize``."""
MAX_BATCH_ENTRIES = 10
MAX_ATTRIBUTES = 10
"""Message attributes SQS accepts on one message."""
ATTRIBUTE_RESERVE = 4096
"""Bytes kept free in each message for its attributes (each value but the verdict is cut to
256 chars; the verdict's own length is reserved on top)."""
_ATTRIBUTE_VALUE_MAX = 256
_ATTEMPTS = 3
# What SQS refuses in a body (its documented ranges are #x9 #xA #xD #x20-#xD7FF
# #xE000-#xFFFD #x10000-#x10FFFF) that valid UTF-8 can hold: surrogates cannot be decoded
# from UTF-8, so only these are left. (The negated class of the allowed ranges costs 20 ms
# to compile: a cold start.)
_SQS_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SQS_ASCII = b"\t\n\r" + bytes(range(0x20, 0x80))


class ForwardError(WahookError):
    """SQS did not accept every part of a body."""


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One ``SendMessageBatch`` entry, with its size as SQS counts it."""

    params: dict[str, Any]
    size: int


def _attr(value: str | int, kind: str = "String") -> dict[str, str]:
    return {"DataType": kind, "StringValue": str(value)[:_ATTRIBUTE_VALUE_MAX]}


def iso_utc(epoch: float) -> str:
    """``2025-11-25T13:00:00.250Z``."""
    ms = int(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{ms:03d}Z"


def attributes(
    summary: Summary, original: Summary, received_at: float, verdict: Verdict
) -> dict[str, Any]:
    """The message attributes of one part (``summary``) of a body (``original``)."""
    out: dict[str, Any] = {
        "body_sha256": _attr(original.sha256),
        "received_at": _attr(iso_utc(received_at)),
        # Whole, never cut: a cut list of ids would name other organizations.
        "verdict": {"DataType": "String", "StringValue": verdict.encode()},
    }
    if summary.problem is not None:
        out["problem"] = _attr(summary.problem)
        return out
    for name, values in (
        ("waba_id", summary.waba_ids),
        ("phone_number_id", summary.phone_number_ids),
        ("field", summary.fields),
    ):
        if values:
            out[name] = _attr(",".join(values))
    counts = f"changes={summary.changes},messages={summary.messages},statuses={summary.statuses}"
    out["counts"] = _attr(counts)
    return out


def _attributes_size(attrs: dict[str, Any]) -> int:
    return sum(
        len(name.encode()) + len(a["DataType"]) + len(a["StringValue"].encode())
        for name, a in attrs.items()
    )


def _message_body(body: bytes) -> tuple[str, bool]:
    """The body as SQS text, and whether it had to be base64-encoded."""
    if body.isascii():
        # The usual case (Meta escapes non-ASCII): a C-speed check instead of the regex.
        if body.translate(None, _SQS_ASCII):
            return base64.b64encode(body).decode("ascii"), True
        return body.decode("ascii"), False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True
    if _SQS_REFUSED.search(text):
        return base64.b64encode(body).decode("ascii"), True
    return text, False


class Planner:
    """Turns an accepted body into batches of ``SendMessageBatch`` entries."""

    def __init__(self, queue_url: str, *, max_message_bytes: int = SQS_MAX_MESSAGE_BYTES):
        if max_message_bytes <= ATTRIBUTE_RESERVE * 2:
            raise ValueError(f"max_message_bytes too small: {max_message_bytes}")
        self.queue_url = queue_url
        self.max_message_bytes = max_message_bytes
        self.fifo = queue_url.endswith(".fifo")

    def entries(self, accepted: Accepted) -> list[Entry]:
        body, original = accepted.body, accepted.summary
        limit = self.max_message_bytes - ATTRIBUTE_RESERVE - len(accepted.verdict.encode())
        if len(body) <= limit:
            parts = [body]
        elif original.problem is not None:
            raise ForwardError(
                f"a {len(body)}-byte body that is not a notification cannot be queued "
                f"(SQS takes {limit}); {original.problem}"
            )
        else:
            try:
                parts = split(body, limit)
            except Unsplittable as exc:
                raise ForwardError(f"body of {len(body)} bytes cannot be queued: {exc}") from None
        out: list[Entry] = []
        for i, part in enumerate(parts):
            summary = original if len(parts) == 1 else summarize(part)
            attrs = attributes(summary, original, accepted.received_at, accepted.verdict)
            if len(parts) > 1:
                attrs["part"] = _attr(f"{i + 1}/{len(parts)}")
            text, encoded = _message_body(part)
            if encoded:
                attrs["content_encoding"] = _attr("base64")
            params: dict[str, Any] = {
                "Id": f"p{i}",
                "MessageBody": text,
                "MessageAttributes": attrs,
            }
            if self.fifo:
                group = (summary.phone_number_ids or summary.waba_ids or ("wahook",))[0]
                params["MessageGroupId"] = group[:128]
                params["MessageDeduplicationId"] = hashlib.sha256(part).hexdigest()
            size = (len(text) if encoded else len(part)) + _attributes_size(attrs)
            if size > self.max_message_bytes:
                raise ForwardError(f"part {i + 1} is {size} bytes, over the SQS limit")
            out.append(Entry(params, size))
        return out

    def batches(self, entries: list[Entry]) -> Iterator[list[Entry]]:
        """Consecutive groups of at most 10 entries and ``max_message_bytes`` in all."""
        batch: list[Entry] = []
        used = 0
        for entry in entries:
            if batch and (
                len(batch) == MAX_BATCH_ENTRIES or used + entry.size > self.max_message_bytes
            ):
                yield batch
                batch, used = [], 0
            batch.append(entry)
            used += entry.size
        if batch:
            yield batch

    def request(self, batch: list[Entry]) -> dict[str, Any]:
        return {"QueueUrl": self.queue_url, "Entries": [e.params for e in batch]}

    @staticmethod
    def failed(batch: list[Entry], response: dict[str, Any]) -> tuple[list[Entry], str]:
        """The entries SQS did not accept, and why (for the error if retries run out)."""
        failed = response.get("Failed") or []
        if not failed:
            return [], ""
        ids = {f["Id"] for f in failed}
        reasons = sorted({f"{f.get('Code')}: {f.get('Message')}" for f in failed})
        if any(f.get("SenderFault") for f in failed):
            # The request itself is wrong: sending it again cannot help.
            raise ForwardError(f"SQS refused {len(ids)} part(s): {'; '.join(reasons)}")
        return [e for e in batch if e.params["Id"] in ids], "; ".join(reasons)


class SyncForwarder:
    """Sends with a botocore SQS client (the Lambda handler's, created once)."""

    def __init__(self, client: Any, planner: Planner) -> None:
        self.client = client
        self.planner = planner

    def send(self, accepted: Accepted) -> int:
        """Queue every part of ``accepted``; the number of parts. Raises ``ForwardError``."""
        entries = self.planner.entries(accepted)
        for batch in self.planner.batches(entries):
            self._send_batch(batch)
        return len(entries)

    def _send_batch(self, batch: list[Entry]) -> None:
        reason = ""
        for _ in range(_ATTEMPTS):
            try:
                response = self.client.send_message_batch(**self.planner.request(batch))
            except Exception as exc:  # botocore raises many unrelated types; all mean "not sent"
                raise ForwardError(f"SQS SendMessageBatch failed: {type(exc).__name__}") from exc
            batch, reason = self.planner.failed(batch, response)
            if not batch:
                return
        raise ForwardError(f"SQS did not accept {len(batch)} part(s): {reason}")


class AsyncForwarder:
    """Sends with an aiobotocore SQS client (``wahook serve``); batches go out together."""

    def __init__(self, client: Any, planner: Planner) -> None:
        self.client = client
        self.planner = planner

    async def send(self, accepted: Accepted) -> int:
        import asyncio  # here, not at the top: the Lambda handler imports this module

        entries = self.planner.entries(accepted)
        batches = list(self.planner.batches(entries))
        if len(batches) == 1:
            await self._send_batch(batches[0])
            return len(entries)
        results = await asyncio.gather(
            *(self._send_batch(b) for b in batches), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            if isinstance(errors[0], ForwardError):
                raise errors[0]
            raise ForwardError(f"SQS send failed: {type(errors[0]).__name__}") from errors[0]
        return len(entries)

    async def _send_batch(self, batch: list[Entry]) -> None:
        reason = ""
        for _ in range(_ATTEMPTS):
            try:
                response = await self.client.send_message_batch(**self.planner.request(batch))
            except Exception as exc:  # aiobotocore raises many unrelated types
                raise ForwardError(f"SQS SendMessageBatch failed: {type(exc).__name__}") from exc
            batch, reason = self.planner.failed(batch, response)
            if not batch:
                return
        raise ForwardError(f"SQS did not accept {len(batch)} part(s): {reason}")
