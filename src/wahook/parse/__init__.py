"""The pure core: WhatsApp webhook bodies into typed events. Needs only msgspec.

>>> from wahook.parse import decode
>>> n = decode(body)
>>> for ev in n.events(): ...     # MessageEvent | StatusEvent | ChangeEvent
>>> n.problems                     # items that could not be decoded
>>> decode_item(raw, models.Status)  # one stored item again, by the same rules
"""

from wahook.errors import DecodeError
from wahook.parse import models
from wahook.parse.decode import (
    OBJECT,
    EnvelopeChange,
    EnvelopeEntry,
    Notification,
    decode,
    decode_item,
    envelope,
)
from wahook.parse.events import ChangeEvent, Event, MessageEvent, Problem, StatusEvent
from wahook.parse.signature import sign, verify_signature, verify_subscription
from wahook.parse.timestamps import to_epoch

__all__ = [
    "OBJECT",
    "ChangeEvent",
    "DecodeError",
    "EnvelopeChange",
    "EnvelopeEntry",
    "Event",
    "MessageEvent",
    "Notification",
    "Problem",
    "StatusEvent",
    "decode",
    "decode_item",
    "envelope",
    "models",
    "sign",
    "to_epoch",
    "verify_signature",
    "verify_subscription",
]
