"""What a decoded POST fans out to: one event per item, plus the problems found.

Every event keeps ``raw``, the exact JSON bytes of its item (for a whole-value
``ChangeEvent``, of its value), and ``path``, where in the body it came from.
"""

from __future__ import annotations

from msgspec import Struct

from wahook.parse.models import (
    KNOWN_CALL_STATUSES,
    KNOWN_FIELDS,
    KNOWN_MESSAGE_TYPES,
    KNOWN_STATUSES,
    Base,
    Contact,
    Message,
    Status,
)
from wahook.parse.timestamps import to_epoch


class MessageEvent(Struct, frozen=True, gc=False):
    """An incoming message (``value.messages[]``, whatever the field: ``messages``, and the
    media of ``history``). Echoes (``smb_message_echoes``) are ``ChangeEvent``s whose
    ``value`` is a ``Message``."""

    field: str
    waba_id: str
    phone_number_id: str | None
    display_phone_number: str | None
    contact: Contact | None
    message: Message
    raw: bytes
    path: str

    kind = "message"

    @property
    def wamid(self) -> str:
        return self.message.id

    @property
    def type(self) -> str:
        return self.message.type

    @property
    def known(self) -> bool:
        """False for a message type this version of wahook does not know."""
        return self.message.type in KNOWN_MESSAGE_TYPES

    @property
    def timestamp(self) -> int | None:
        return to_epoch(self.message.timestamp)


class StatusEvent(Struct, frozen=True, gc=False):
    """A status of an outgoing message (``value.statuses[]``)."""

    field: str
    waba_id: str
    phone_number_id: str | None
    display_phone_number: str | None
    contact: Contact | None
    status: Status
    raw: bytes
    path: str

    kind = "status"

    @property
    def wamid(self) -> str:
        return self.status.id

    @property
    def type(self) -> str:
        return self.status.status

    @property
    def known(self) -> bool:
        """False for a status value outside sent/delivered/read/played/failed (for a call
        status, ``type: "call"``, outside RINGING/ACCEPTED/REJECTED)."""
        if self.status.type == "call":
            return self.status.status in KNOWN_CALL_STATUSES
        return self.status.status in KNOWN_STATUSES

    @property
    def timestamp(self) -> int | None:
        return to_epoch(self.status.timestamp)


class ChangeEvent(Struct, frozen=True, gc=False):
    """Any other change: a whole value (template, account, phone number ... updates) or one
    item of another array of a messaging-style value (``key`` names the array: ``errors``,
    ``calls``, ``user_preferences``, ``message_echoes``, ``state_sync``, ``history``,
    ``groups``). ``value`` is typed where the shape is known, else None; ``raw`` always."""

    field: str
    waba_id: str
    phone_number_id: str | None
    entry_time: int | None
    key: str | None
    value: Base | None
    raw: bytes
    path: str

    kind = "change"

    @property
    def wamid(self) -> str | None:
        return None

    @property
    def type(self) -> str:
        return self.field if self.key is None else f"{self.field}.{self.key}"

    @property
    def known(self) -> bool:
        return self.field in KNOWN_FIELDS


Event = MessageEvent | StatusEvent | ChangeEvent


class Problem(Struct, frozen=True):
    """An item (or a whole change) that could not be decoded: where, why, and its bytes."""

    path: str
    reason: str
    raw: bytes
    field: str | None = None
    waba_id: str | None = None
    phone_number_id: str | None = None
