"""One SQS message (from ``ReceiveMessage`` or a Lambda event record) as a ``Message``.

The receiver's forwarder puts the raw body in the message body, base64-encoded when SQS
could not carry it as text (message attribute ``content_encoding=base64``), and the time it
received the POST in the ``received_at`` attribute (ISO 8601), and its tenancy verdict in the
``verdict`` attribute (``wahook.verdict``). A message without one was queued before verdicts
existed (or by something other than wahook's receiver): it is ``UNVERIFIED``, so its items
are quarantined until an operator says whose data they are.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from typing import Any

from wahook.runtime.source import Message
from wahook.verdict import UNVERIFIED, Verdict


def _string_value(attr: Mapping[str, Any] | None) -> str | None:
    if not attr:
        return None
    value = attr.get("StringValue", attr.get("stringValue"))
    return value if isinstance(value, str) else None


def _epoch(iso: str | None, sent_ms: str | None) -> float | None:
    if iso:
        try:
            when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp()
    if sent_ms and sent_ms.isdigit():
        return int(sent_ms) / 1000
    return None


def to_message(
    message_id: str,
    body: str,
    system_attributes: Mapping[str, str],
    message_attributes: Mapping[str, Mapping[str, Any]],
) -> Message:
    """``system_attributes`` are SQS's own (``SentTimestamp``, ``MessageGroupId`` ...);
    ``message_attributes`` the sender's, in either the API's or Lambda's spelling."""
    raw: bytes
    if _string_value(message_attributes.get("content_encoding")) == "base64":
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            # Not base64 after all: keep the text so the body is quarantined, not lost.
            raw = body.encode("utf-8", "surrogatepass")
    else:
        raw = body.encode("utf-8", "surrogatepass")
    return Message(
        id=message_id,
        body=raw,
        received_at=_epoch(
            _string_value(message_attributes.get("received_at")),
            system_attributes.get("SentTimestamp"),
        ),
        group=system_attributes.get("MessageGroupId"),
        attributes=dict(system_attributes),
        verdict=Verdict.decode(_string_value(message_attributes.get("verdict"))) or UNVERIFIED,
    )
