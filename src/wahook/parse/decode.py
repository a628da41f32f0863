"""``decode(body) -> Notification``: one POST body into typed events, never losing siblings.

How tolerance is built in (not caught after the fact):

1. The envelope is decoded with each change's ``value`` left as ``msgspec.Raw``; a body
   that fails here is not a WhatsApp notification and raises ``DecodeError``.
2. Each value is decoded with its item arrays left as ``Raw``; each item is then decoded on
   its own. A bad item becomes a ``Problem`` (JSON path, reason, raw bytes) and its
   siblings are still events.
3. If the typed envelope does not fit (an entry without ``changes``, a change without
   ``field`` ...), the envelope is decoded again one entry and one change at a time, so
   the broken part is a problem and the rest still decodes.

Quirk rules (see also ``timestamps.to_epoch``):

- A UTF-8 byte order mark at the start is skipped. Any other invalid UTF-8 rejects the body.
- Duplicate keys: the last one wins (as in ``json.loads``); the raw bytes keep both.
- Integers of any size decode losslessly (Python ints); raw bytes keep the digits as sent.
- ``\\u0000`` decodes to U+0000. Lone surrogates (``\\ud800``) are kept too: msgspec
  rejects them, so such a body is decoded through ``json.loads`` instead, and each item's
  ``raw`` is re-encoded as ASCII JSON that spells them as ``\\udXXX`` escapes.
- NaN/Infinity are not JSON and reject the body. Nesting deeper than the interpreter's
  recursion limit rejects the body with ``DecodeError``.
- ``from``/``wa_id``/``recipient_id`` may be ``""`` (BSUID users): kept as ``""``; see
  ``Message.sender`` for the identity to key on.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from msgspec import Raw, Struct

from wahook.errors import DecodeError
from wahook.parse.events import ChangeEvent, Event, MessageEvent, Problem, StatusEvent
from wahook.parse.models import (
    ITEM_TYPES,
    VALUE_TYPES,
    Base,
    Contact,
    Message,
    Metadata,
    Status,
)
from wahook.parse.timestamps import to_epoch

OBJECT = "whatsapp_business_account"
_BOM = b"\xef\xbb\xbf"
_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]", re.ASCII)

T = TypeVar("T")


# --- envelope views ------------------------------------------------------------------


class _Change(Struct, frozen=True):
    field: str
    value: Raw


class _Entry(Struct, frozen=True):
    id: str | int
    changes: list[_Change]
    time: int | float | str | None = None


class _Envelope(Struct, frozen=True):
    object: str
    entry: list[_Entry]


class _LooseEntry(Struct, frozen=True):
    id: str | int | None = None
    changes: list[Raw] = []
    time: int | float | str | None = None


class _LooseEnvelope(Struct, frozen=True):
    object: str
    entry: list[Raw]


class _Value(Struct, frozen=True):
    """A messaging-style value with every item array left raw."""

    metadata: Metadata | None = None
    contacts: list[Raw] | None = None
    messages: list[Raw] | None = None
    statuses: list[Raw] | None = None
    errors: list[Raw] | None = None
    calls: list[Raw] | None = None
    user_preferences: list[Raw] | None = None
    message_echoes: list[Raw] | None = None
    state_sync: list[Raw] | None = None
    history: list[Raw] | None = None
    groups: list[Raw] | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_LOOSE_ENVELOPE = msgspec.json.Decoder(_LooseEnvelope)
_LOOSE_ENTRY = msgspec.json.Decoder(_LooseEntry)
_CHANGE = msgspec.json.Decoder(_Change)
_VALUE = msgspec.json.Decoder(_Value)
_MESSAGE = msgspec.json.Decoder(Message)
_STATUS = msgspec.json.Decoder(Status)
_CONTACT = msgspec.json.Decoder(Contact)
_CONTACTS = msgspec.json.Decoder(list[Contact])
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in {*VALUE_TYPES.values(), *ITEM_TYPES.values()}
}
_DECODERS[Message] = _MESSAGE
_ITEM_ARRAYS = tuple(ITEM_TYPES)


# --- the result ----------------------------------------------------------------------


class Notification:
    """One decoded POST body: its events in document order and the problems found."""

    __slots__ = ("_events", "problems")

    def __init__(self, events: list[Event], problems: list[Problem]) -> None:
        self._events = events
        self.problems = problems

    def events(self) -> Iterator[Event]:
        """Every entry × change × item, in document order."""
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"<Notification events={len(self._events)} problems={len(self.problems)}>"

    def unknown(self) -> Counter[str]:
        """Counts of what this wahook does not know (message types, statuses, fields), keyed
        ``"message:<type>"``, ``"status:<status>"``, ``"field:<field>"`` — to measure drift."""
        counts: Counter[str] = Counter()
        for ev in self._events:
            if not ev.known:
                label = ev.field if isinstance(ev, ChangeEvent) else ev.type
                counts[f"{ev.kind}:{label}"] += 1
        return counts


# --- decoding ------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _to_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DecodeError(
                "body text holds a lone surrogate character that UTF-8 cannot carry; "
                "pass the raw bytes received instead",
                position=exc.start,
            ) from None
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"decode() takes bytes or str, not {type(body).__name__}")


def decode(body: bytes | bytearray | memoryview | str) -> Notification:
    """Decode one webhook POST body.

    Raises ``DecodeError`` when the body is not a WhatsApp notification at all (empty, not
    JSON, not UTF-8, wrong top-level shape, ``object`` other than
    ``whatsapp_business_account``, absurdly deep). Everything else — including broken items
    — decodes: broken items are listed in ``Notification.problems``.
    """
    data = _to_bytes(body)
    if data.startswith(_BOM):
        data = data[3:]
    if not data.strip():
        raise DecodeError("empty body: a webhook POST carries a JSON object")
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("body is not valid UTF-8", position=exc.start) from None
    try:
        envelope = _ENVELOPE.decode(data)
    except msgspec.ValidationError:
        return _decode_loose(data)
    except msgspec.DecodeError as exc:
        return _decode_fallback(data, exc)
    except RecursionError:
        raise DecodeError("JSON nested too deeply to be a webhook") from None
    if envelope.object != OBJECT:
        raise _wrong_object(envelope.object)
    events: list[Event] = []
    problems: list[Problem] = []
    for i, entry in enumerate(envelope.entry):
        waba_id = str(entry.id)
        entry_time = to_epoch(entry.time)
        for j, change in enumerate(entry.changes):
            _decode_change(
                change.field, change.value, waba_id, entry_time,
                f"entry[{i}].changes[{j}]", events, problems,
            )  # fmt: skip
    return Notification(events, problems)


def _wrong_object(obj: object) -> DecodeError:
    return DecodeError(f"not a WhatsApp notification: object is {obj!r}, expected {OBJECT!r}")


def _decode_loose(data: bytes) -> Notification:
    """The typed envelope did not fit: go one entry and one change at a time."""
    try:
        envelope = _LOOSE_ENVELOPE.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"not a WhatsApp notification: {_reason(exc)}") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply to be a webhook") from None
    if envelope.object != OBJECT:
        raise _wrong_object(envelope.object)
    events: list[Event] = []
    problems: list[Problem] = []
    for i, raw_entry in enumerate(envelope.entry):
        path = f"entry[{i}]"
        try:
            entry = _LOOSE_ENTRY.decode(raw_entry)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            problems.append(Problem(path, f"bad entry: {_reason(exc)}", bytes(raw_entry)))
            continue
        waba_id = "" if entry.id is None else str(entry.id)
        if entry.id is None:
            problems.append(Problem(path, "entry has no id (WABA id)", bytes(raw_entry)))
            continue
        entry_time = to_epoch(entry.time)
        for j, raw_change in enumerate(entry.changes):
            cpath = f"{path}.changes[{j}]"
            try:
                change = _CHANGE.decode(raw_change)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
                problems.append(
                    Problem(cpath, f"bad change: {_reason(exc)}", bytes(raw_change),
                            waba_id=waba_id)
                )  # fmt: skip
                continue
            _decode_change(change.field, change.value, waba_id, entry_time, cpath, events, problems)
    return Notification(events, problems)


def _decode_change(
    field: str,
    value: Raw,
    waba_id: str,
    entry_time: int | None,
    path: str,
    events: list[Event],
    problems: list[Problem],
) -> None:
    vpath = f"{path}.value"
    value_type = VALUE_TYPES.get(field)
    if value_type is not None:
        try:
            typed: Base | None = _DECODERS[value_type].decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            problems.append(
                Problem(vpath, f"bad {field} value: {_reason(exc)}", bytes(value),
                        field=field, waba_id=waba_id)
            )  # fmt: skip
            return
        events.append(ChangeEvent(field, waba_id, None, entry_time, None, typed, bytes(value),
                                  vpath))  # fmt: skip
        return
    try:
        v = _VALUE.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        problems.append(
            Problem(vpath, f"bad {field} value: {_reason(exc)}", bytes(value),
                    field=field, waba_id=waba_id)
        )  # fmt: skip
        return
    meta = v.metadata
    phone_number_id = meta.phone_number_id if meta is not None else None
    display = meta.display_phone_number if meta is not None else None
    contacts = _contacts(v.contacts, vpath, field, waba_id, phone_number_id, problems)
    found = False
    if v.messages is not None:
        found = True
        for k, raw in enumerate(v.messages):
            ipath = f"{vpath}.messages[{k}]"
            try:
                message = _MESSAGE.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
                problems.append(
                    Problem(ipath, f"bad message: {_reason(exc)}", bytes(raw), field,
                            waba_id, phone_number_id)
                )  # fmt: skip
                continue
            contact = _match(contacts, message.from_, message.from_user_id)
            events.append(MessageEvent(field, waba_id, phone_number_id, display, contact,
                                       message, bytes(raw), ipath))  # fmt: skip
    if v.statuses is not None:
        found = True
        for k, raw in enumerate(v.statuses):
            ipath = f"{vpath}.statuses[{k}]"
            try:
                status = _STATUS.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
                problems.append(
                    Problem(ipath, f"bad status: {_reason(exc)}", bytes(raw), field,
                            waba_id, phone_number_id)
                )  # fmt: skip
                continue
            contact = _match(contacts, status.recipient_id, status.recipient_user_id)
            events.append(StatusEvent(field, waba_id, phone_number_id, display, contact,
                                      status, bytes(raw), ipath))  # fmt: skip
    for key in _ITEM_ARRAYS:
        items: list[Raw] | None = getattr(v, key)
        if items is None:
            continue
        found = True
        decoder = _DECODERS[ITEM_TYPES[key]]
        for k, raw in enumerate(items):
            ipath = f"{vpath}.{key}[{k}]"
            try:
                item = decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
                problems.append(
                    Problem(ipath, f"bad {key} item: {_reason(exc)}", bytes(raw), field,
                            waba_id, phone_number_id)
                )  # fmt: skip
                continue
            events.append(ChangeEvent(field, waba_id, phone_number_id, entry_time, key, item,
                                      bytes(raw), ipath))  # fmt: skip
    if not found:
        # A field whose shape wahook does not know (or a messaging value with no items):
        # keep the whole value, raw.
        events.append(ChangeEvent(field, waba_id, phone_number_id, entry_time, None, None,
                                  bytes(value), vpath))  # fmt: skip


def _contacts(
    raw: list[Raw] | None,
    vpath: str,
    field: str,
    waba_id: str,
    phone_number_id: str | None,
    problems: list[Problem],
) -> list[Contact]:
    if not raw:
        return []
    out: list[Contact] = []
    for k, item in enumerate(raw):
        try:
            out.append(_CONTACT.decode(item))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            problems.append(
                Problem(f"{vpath}.contacts[{k}]", f"bad contact: {_reason(exc)}", bytes(item),
                        field, waba_id, phone_number_id)
            )  # fmt: skip
    return out


def _match(contacts: Sequence[Contact], wa_id: str | None, user_id: str | None) -> Contact | None:
    """The contact of a message or status: matched on wa_id, then user_id; a lone contact
    when neither identifies anyone (never pair contacts[i] with messages[i] blindly)."""
    if not contacts:
        return None
    if wa_id:
        for c in contacts:
            if c.wa_id == wa_id:
                return c
    if user_id:
        for c in contacts:
            if c.user_id == user_id:
                return c
    if len(contacts) == 1 and not wa_id and not user_id:
        return contacts[0]
    if len(contacts) == 1 and wa_id and not contacts[0].wa_id:
        return contacts[0]
    return None


# --- the json.loads path, for bodies msgspec cannot read (lone surrogates) --------------


def _reject_constant(name: str) -> float:
    raise DecodeError(f"invalid JSON: {name} is not a JSON number")


def _decode_fallback(data: bytes, exc: msgspec.DecodeError) -> Notification:
    if not _LONE_SURROGATE.search(data):
        raise DecodeError(f"invalid JSON: {_reason(exc)}") from None
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("JSON nested too deeply to be a webhook") from None
    except ValueError as err:
        raise DecodeError(f"invalid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise DecodeError(
            f"not a WhatsApp notification: top-level JSON is {type(doc).__name__}, not object"
        )
    if doc.get("object") != OBJECT:
        raise _wrong_object(doc.get("object"))
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise DecodeError("not a WhatsApp notification: `entry` is missing or not an array")
    # Re-encode every change as ASCII JSON (lone surrogates become \udXXX escapes), then
    # decode those values through the same code, items being re-read with json.loads.
    events: list[Event] = []
    problems: list[Problem] = []
    for i, entry in enumerate(entries):
        path = f"entry[{i}]"
        if not isinstance(entry, dict) or entry.get("id") is None:
            problems.append(Problem(path, "bad entry: no id", _dump(entry)))
            continue
        waba_id = str(entry["id"])
        entry_time = to_epoch(entry.get("time"))
        changes = entry.get("changes")
        if not isinstance(changes, list):
            problems.append(Problem(path, "bad entry: no changes array", _dump(entry)))
            continue
        for j, change in enumerate(changes):
            cpath = f"{path}.changes[{j}]"
            if (
                not isinstance(change, dict)
                or not isinstance(change.get("field"), str)
                or "value" not in change
            ):
                problems.append(Problem(cpath, "bad change: needs field and value",
                                        _dump(change), waba_id=waba_id))  # fmt: skip
                continue
            _ObjectChange(change["field"], change["value"], waba_id, entry_time, cpath,
                          events, problems).run()  # fmt: skip
    return Notification(events, problems)


def _dump(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class _ObjectChange:
    """The per-change logic of ``_decode_change`` over ``json.loads`` objects."""

    def __init__(
        self,
        field: str,
        value: Any,
        waba_id: str,
        entry_time: int | None,
        path: str,
        events: list[Event],
        problems: list[Problem],
    ) -> None:
        self.field, self.value, self.waba_id = field, value, waba_id
        self.entry_time, self.vpath = entry_time, f"{path}.value"
        self.events, self.problems = events, problems
        self.phone_number_id: str | None = None

    def _convert(self, obj: Any, typ: type[T], path: str, what: str) -> T | None:
        try:
            return msgspec.convert(obj, typ)
        except (msgspec.ValidationError, RecursionError) as exc:
            self.problems.append(
                Problem(path, f"bad {what}: {_reason(exc)}", _dump(obj), self.field,
                        self.waba_id, self.phone_number_id)
            )  # fmt: skip
            return None

    def run(self) -> None:
        field, value = self.field, self.value
        value_type = VALUE_TYPES.get(field)
        if value_type is not None:
            typed = self._convert(value, value_type, self.vpath, f"{field} value")
            if typed is not None:
                self.events.append(ChangeEvent(field, self.waba_id, None, self.entry_time,
                                               None, typed, _dump(value), self.vpath))  # fmt: skip
            return
        if not isinstance(value, Mapping):
            self.problems.append(Problem(self.vpath, f"bad {field} value: not an object",
                                         _dump(value), field, self.waba_id))  # fmt: skip
            return
        meta = self._convert(value.get("metadata") or {}, Metadata, self.vpath, "metadata")
        self.phone_number_id = meta.phone_number_id if meta else None
        display = meta.display_phone_number if meta else None
        contacts = [
            c
            for k, obj in enumerate(_array(value.get("contacts")))
            if (c := self._convert(obj, Contact, f"{self.vpath}.contacts[{k}]", "contact"))
        ]
        found = False
        for key in ("messages", "statuses", *_ITEM_ARRAYS):
            if not isinstance(value.get(key), list):
                continue
            found = True
            for k, obj in enumerate(value[key]):
                ipath = f"{self.vpath}.{key}[{k}]"
                self._item(key, obj, ipath, contacts, display)
        if not found:
            self.events.append(ChangeEvent(field, self.waba_id, self.phone_number_id,
                                           self.entry_time, None, None, _dump(value),
                                           self.vpath))  # fmt: skip

    def _item(
        self, key: str, obj: Any, path: str, contacts: list[Contact], display: str | None
    ) -> None:
        pid = self.phone_number_id
        if key == "messages":
            m = self._convert(obj, Message, path, "message")
            if m is not None:
                c = _match(contacts, m.from_, m.from_user_id)
                self.events.append(MessageEvent(self.field, self.waba_id, pid, display, c, m,
                                                _dump(obj), path))  # fmt: skip
        elif key == "statuses":
            s = self._convert(obj, Status, path, "status")
            if s is not None:
                c = _match(contacts, s.recipient_id, s.recipient_user_id)
                self.events.append(StatusEvent(self.field, self.waba_id, pid, display, c, s,
                                               _dump(obj), path))  # fmt: skip
        else:
            item = self._convert(obj, ITEM_TYPES[key], path, f"{key} item")
            if item is not None:
                self.events.append(ChangeEvent(self.field, self.waba_id, pid, self.entry_time,
                                               key, item, _dump(obj), path))  # fmt: skip


def _array(obj: object) -> list[Any]:
    return obj if isinstance(obj, list) else []
