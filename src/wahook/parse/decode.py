"""``decode(body) -> Notification``: one POST body into typed events, never losing siblings.

How tolerance is built in (not caught after the fact):

1. One msgspec pass reads the envelope — entries, changes, each value's ``metadata`` — and
   leaves every item (message, status, contact, call ...) as ``msgspec.Raw``, a view into
   the body. A body that is not JSON here raises ``DecodeError``.
2. Each item is then decoded on its own from its ``Raw``. A bad item becomes a ``Problem``
   (JSON path, reason, raw bytes) and its siblings are still events.
3. Only if that envelope does not fit (an entry without ``changes``, a change without
   ``field``, a value that is not an object ...) is the body read again one entry and one
   change at a time, so the broken part is a problem and the rest still decodes.
4. Values of fields that are one object (template, account, phone number ... updates), and
   values with no item arrays, keep the whole value's raw bytes; those are taken from a
   second, lazy pass that only runs when such a change is present.

Quirk rules (see also ``timestamps.to_epoch``):

- A UTF-8 byte order mark at the start is skipped. Any other invalid UTF-8 rejects the body.
- Empty or whitespace-only bodies, invalid JSON (the error says at which byte), trailing
  garbage, ``NaN``/``Infinity`` and numbers beyond float range reject the body.
- The top level must be an object whose ``object`` is ``whatsapp_business_account``.
- Duplicate keys: the last one wins (as in ``json.loads``); the raw bytes keep both.
- Integers of any size decode losslessly (Python ints); raw bytes keep the digits as sent.
- ``\\u0000`` decodes to U+0000. Lone surrogates (``\\ud800``) are kept too: msgspec
  rejects them, so such a body is decoded through ``json.loads`` instead, and each item's
  ``raw`` is re-encoded as ASCII JSON that spells them as ``\\udXXX`` escapes.
- Nesting deeper than the interpreter's recursion limit rejects the body with
  ``DecodeError``.
- ``from``/``wa_id``/``recipient_id`` may be ``""`` (BSUID users): kept as ``""``; see
  ``Message.sender`` for the identity to key on.
- A value of a field wahook does not know is kept whole (``ChangeEvent`` with ``value``
  None and its raw bytes), whatever its JSON type.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from msgspec import Raw, Struct

from wahook.errors import DecodeError
from wahook.parse.events import ChangeEvent, Event, MessageEvent, Problem, StatusEvent
from wahook.parse.models import (
    ITEM_TYPES,
    KNOWN_FIELDS,
    VALUE_TYPES,
    Contact,
    Message,
    Metadata,
    Status,
)
from wahook.parse.timestamps import to_epoch

OBJECT = "whatsapp_business_account"
_BOM = b"\xef\xbb\xbf"
_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]", re.ASCII)
_AT_BYTE = re.compile(r"\(byte (\d+)\)")
# What decoding one part can raise; each becomes a problem of that part only.
_PART_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError)

T = TypeVar("T")


# --- envelope views ------------------------------------------------------------------


class _Value(Struct, frozen=True, gc=False):
    """A messaging-style value with every item array left raw. The arrays are listed in the
    order their events are listed (``_ARRAYS`` follows this order)."""

    metadata: Metadata | None = None
    contacts: list[Raw] | None = None
    messages: list[Raw] | None = None
    statuses: list[Raw] | None = None
    errors: list[Raw] | None = None
    user_preferences: list[Raw] | None = None
    calls: list[Raw] | None = None
    message_echoes: list[Raw] | None = None
    state_sync: list[Raw] | None = None
    history: list[Raw] | None = None
    groups: list[Raw] | None = None


class _Change(Struct, frozen=True, gc=False):
    field: str
    value: _Value


class _Entry(Struct, frozen=True, gc=False):
    id: str | int
    changes: list[_Change]
    time: int | float | str | None = None


class _Envelope(Struct, frozen=True, gc=False):
    object: str
    entry: list[_Entry]


class _RawChange(Struct, frozen=True, gc=False):
    field: str
    value: Raw


class _RawEntry(Struct, frozen=True, gc=False):
    changes: list[_RawChange]


class _RawEnvelope(Struct, frozen=True, gc=False):
    entry: list[_RawEntry]


class _LooseEntry(Struct, frozen=True, gc=False):
    id: str | int | None = None
    changes: list[Raw] = []
    time: int | float | str | None = None


class _LooseEnvelope(Struct, frozen=True, gc=False):
    object: str
    entry: list[Raw]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_RAW_ENVELOPE = msgspec.json.Decoder(_RawEnvelope)
_LOOSE_ENVELOPE = msgspec.json.Decoder(_LooseEnvelope)
_LOOSE_ENTRY = msgspec.json.Decoder(_LooseEntry)
_RAW_CHANGE = msgspec.json.Decoder(_RawChange)
_VALUE = msgspec.json.Decoder(_Value)
_CONTACT = msgspec.json.Decoder(Contact)
_TYPES: set[type[Any]] = {*VALUE_TYPES.values(), *ITEM_TYPES.values(), Status}
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {t: msgspec.json.Decoder(t) for t in _TYPES}
_ITEM_DECODERS = {"messages": _DECODERS[Message], "statuses": _DECODERS[Status]} | {
    key: _DECODERS[typ] for key, typ in ITEM_TYPES.items()
}
_WHAT = {"messages": "message", "statuses": "status"}
# Item arrays of a messaging-style value, in _Value's order, which is the order their events
# are listed: (key, decoder of one item, what a problem calls it).
_ARRAYS: tuple[tuple[str, msgspec.json.Decoder[Any], str], ...] = tuple(
    (key, _ITEM_DECODERS[key], _WHAT.get(key, f"{key} item"))
    for key in _Value.__struct_fields__[2:]
)
_MESSAGES, _STATUSES, *_REST = _ARRAYS
_OTHERS = tuple(_REST)
_NO_OTHERS = (None,) * len(_OTHERS)
# "[0]", "[1]" ... made once: paths are built for every item, and concatenation is cheaper.
_INDEXED = 1024
_INDEX = tuple(f"[{k}]" for k in range(_INDEXED))
_VPATHS = {(i, j): f"entry[{i}].changes[{j}].value" for i in range(8) for j in range(8)}


def _vpath(i: int, j: int) -> str:
    return _VPATHS.get((i, j)) or f"entry[{i}].changes[{j}].value"


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
        ``"message:<type>"``, ``"status:<status>"``, ``"change:<field>"`` — to measure drift."""
        counts: Counter[str] = Counter()
        for ev in self._events:
            if not ev.known:
                label = ev.field if isinstance(ev, ChangeEvent) else ev.type
                counts[f"{ev.kind}:{label}"] += 1
        return counts


# --- decoding ------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
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
    data = body if type(body) is bytes else _to_bytes(body)
    if data[:3] == _BOM:
        data = data[3:]
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
        raise _too_deep() from None
    if envelope.object != OBJECT:
        raise _wrong_object(envelope.object)
    out = _Fanout(data)
    for i, entry in enumerate(envelope.entry):
        waba_id = entry.id if isinstance(entry.id, str) else str(entry.id)
        entry_time = None if entry.time is None else to_epoch(entry.time)
        for j, change in enumerate(entry.changes):
            out.change(change.field, change.value, None, waba_id, entry_time, i, j)
    return Notification(out.events, out.problems)


def _too_deep() -> DecodeError:
    return DecodeError("JSON nested too deeply to be a webhook")


def _wrong_object(obj: object) -> DecodeError:
    return DecodeError(f"not a WhatsApp notification: object is {obj!r}, expected {OBJECT!r}")


def _invalid_json(data: bytes, exc: msgspec.DecodeError) -> DecodeError:
    if not data.strip():
        return DecodeError("empty body: a webhook POST carries a JSON object")
    reason = _reason(exc)
    found = _AT_BYTE.search(reason)
    if found is not None:
        at = int(found.group(1))
        if data[at : at + 3] in (b"NaN", b"Inf", b"-In"):
            reason = "NaN and Infinity are not JSON numbers"
        return DecodeError(f"invalid JSON: {reason}", position=at)
    if "truncated" in reason:
        return DecodeError("invalid JSON: the body ends in the middle of a value",
                           position=len(data))  # fmt: skip
    return DecodeError(f"invalid JSON: {reason}")


def _decode_loose(data: bytes) -> Notification:
    """The envelope did not fit: go one entry and one change at a time."""
    try:
        envelope = _LOOSE_ENVELOPE.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"not a WhatsApp notification: {_reason(exc)}") from None
    except msgspec.DecodeError as exc:
        # The typed pass stopped at a validation error before reaching broken JSON.
        return _decode_fallback(data, exc)
    except RecursionError:
        raise _too_deep() from None
    if envelope.object != OBJECT:
        raise _wrong_object(envelope.object)
    out = _Fanout(data)
    for i, raw_entry in enumerate(envelope.entry):
        path = f"entry[{i}]"
        try:
            entry = _LOOSE_ENTRY.decode(raw_entry)
        except _PART_ERRORS as exc:
            out.problem(path, f"bad entry: {_reason(exc)}", raw_entry)
            continue
        if entry.id is None:
            out.problem(path, "bad entry: no id (WABA id)", raw_entry)
            continue
        waba_id = str(entry.id)
        entry_time = to_epoch(entry.time)
        for j, raw_change in enumerate(entry.changes):
            try:
                change = _RAW_CHANGE.decode(raw_change)
            except _PART_ERRORS as exc:
                out.problem(f"{path}.changes[{j}]", f"bad change: {_reason(exc)}", raw_change,
                            waba_id=waba_id)  # fmt: skip
                continue
            field = change.field
            try:
                value: _Value | None = _VALUE.decode(change.value)
            except _PART_ERRORS as exc:
                if field in KNOWN_FIELDS and field not in VALUE_TYPES:
                    out.problem(f"{path}.changes[{j}].value", f"bad {field} value: "
                                f"{_reason(exc)}", change.value, field, waba_id)  # fmt: skip
                    continue
                value = None  # a one-object field, or a field wahook does not know
            out.change(field, value, change.value, waba_id, entry_time, i, j)
    return Notification(out.events, out.problems)


class _Fanout:
    """Turns decoded changes into events and problems, appended in document order."""

    __slots__ = ("_data", "_values", "events", "problems")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._values: _RawEnvelope | None = None
        self.events: list[Event] = []
        self.problems: list[Problem] = []

    def problem(
        self,
        path: str,
        reason: str,
        raw: Raw,
        field: str | None = None,
        waba_id: str | None = None,
        phone_number_id: str | None = None,
    ) -> None:
        self.problems.append(Problem(path, reason, bytes(raw), field, waba_id, phone_number_id))

    def _raw_value(self, i: int, j: int) -> Raw:
        # The whole value's bytes, from a second pass made at most once per body.
        if self._values is None:
            self._values = _RAW_ENVELOPE.decode(self._data)
        return self._values.entry[i].changes[j].value

    def change(
        self,
        field: str,
        value: _Value | None,
        raw_value: Raw | None,
        waba_id: str,
        entry_time: int | None,
        i: int,
        j: int,
    ) -> None:
        """One change. ``value`` is None when the value is not a messaging-style object;
        ``raw_value`` may be None when ``value`` is not (it is then fetched if needed)."""
        vpath = _vpath(i, j)
        value_type = VALUE_TYPES.get(field)
        if value_type is None and value is not None and self._items(field, value, waba_id,
                                                                    entry_time, vpath):  # fmt: skip
            return
        if raw_value is None:
            raw_value = self._raw_value(i, j)
        if value_type is not None:
            try:
                typed = _DECODERS[value_type].decode(raw_value)
            except _PART_ERRORS as exc:
                self.problem(vpath, f"bad {field} value: {_reason(exc)}", raw_value, field,
                             waba_id)  # fmt: skip
                return
            self.events.append(ChangeEvent(field, waba_id, None, entry_time, None, typed,
                                           bytes(raw_value), vpath))  # fmt: skip
            return
        # A field whose shape wahook does not know, or a messaging value with no items:
        # keep the whole value, raw.
        pnid = value.metadata.phone_number_id if value and value.metadata else None
        self.events.append(ChangeEvent(field, waba_id, pnid, entry_time, None, None,
                                       bytes(raw_value), vpath))  # fmt: skip

    def _items(
        self, field: str, value: _Value, waba_id: str, entry_time: int | None, vpath: str
    ) -> bool:
        """Events for every item of every array of ``value``; False when it has none."""
        # Attributes are read one by one: a loop over the arrays costs more than the
        # decoding of a one-status body.
        messages, statuses = value.messages, value.statuses
        others = (value.errors, value.user_preferences, value.calls, value.message_echoes,
                  value.state_sync, value.history, value.groups)  # fmt: skip
        if messages is None and statuses is None and others == _NO_OTHERS:
            return False
        meta = value.metadata
        pnid = meta.phone_number_id if meta is not None else None
        display = meta.display_phone_number if meta is not None else None
        find = None
        if value.contacts:
            find = _finder(self._contacts(value.contacts, vpath, field, waba_id, pnid))
        if messages is not None:
            self._array(_MESSAGES, messages, field, waba_id, pnid, display, find, None, vpath)
        if statuses is not None:
            self._array(_STATUSES, statuses, field, waba_id, pnid, display, find, None, vpath)
        if others != _NO_OTHERS:
            for spec, raws in zip(_OTHERS, others, strict=True):
                if raws is not None:
                    self._array(spec, raws, field, waba_id, pnid, display, None, entry_time,
                                vpath)  # fmt: skip
        return True

    def _array(
        self,
        spec: tuple[str, msgspec.json.Decoder[Any], str],
        raws: list[Raw],
        field: str,
        waba_id: str,
        pnid: str | None,
        display: str | None,
        find: Callable[[str | None, str | None], Contact | None] | None,
        entry_time: int | None,
        vpath: str,
    ) -> None:
        """The hot loop: one msgspec call per item, no other function call."""
        key, decoder, what = spec
        events, problems, index, dec = self.events, self.problems, _INDEX, decoder.decode
        prefix = f"{vpath}.{key}"
        is_status, is_message = key == "statuses", key == "messages"
        for k, raw in enumerate(raws):
            path = prefix + index[k] if k < _INDEXED else f"{prefix}[{k}]"
            try:
                item = dec(raw)
            except _PART_ERRORS as exc:
                problems.append(Problem(path, f"bad {what}: {_reason(exc)}", bytes(raw),
                                        field, waba_id, pnid))  # fmt: skip
                continue
            if is_status:
                contact = find(item.recipient_id, item.recipient_user_id) if find else None
                events.append(StatusEvent(field, waba_id, pnid, display, contact, item,
                                          bytes(raw), path))  # fmt: skip
            elif is_message:
                contact = find(item.from_, item.from_user_id) if find else None
                events.append(MessageEvent(field, waba_id, pnid, display, contact, item,
                                           bytes(raw), path))  # fmt: skip
            else:
                events.append(ChangeEvent(field, waba_id, pnid, entry_time, key, item,
                                          bytes(raw), path))  # fmt: skip

    def _contacts(
        self,
        raws: list[Raw] | None,
        vpath: str,
        field: str,
        waba_id: str,
        pnid: str | None,
    ) -> list[Contact]:
        if not raws:
            return []
        out: list[Contact] = []
        for k, raw in enumerate(raws):
            try:
                out.append(_CONTACT.decode(raw))
            except _PART_ERRORS as exc:
                self.problem(f"{vpath}.contacts[{k}]", f"bad contact: {_reason(exc)}", raw,
                             field, waba_id, pnid)  # fmt: skip
        return out


_Find = Callable[[str | None, str | None], Contact | None]


def _finder(contacts: Sequence[Contact]) -> _Find | None:
    """How to find the contact of a message or status among a value's ``contacts[]``:
    matched on wa_id, then user_id; a lone contact when neither identifies anyone (or when
    it has no wa_id to compare). Never pairs contacts[i] with messages[i] blindly:
    ``system`` messages come without contacts. None when there are no contacts."""
    if not contacts:
        return None
    if len(contacts) == 1:
        lone = contacts[0]

        def find_lone(wa_id: str | None, user_id: str | None) -> Contact | None:
            if wa_id and (lone.wa_id == wa_id or not lone.wa_id):
                return lone
            if user_id and lone.user_id == user_id:
                return lone
            return lone if not (wa_id or user_id) else None

        return find_lone
    # Big batches carry one contact per message: index them. The first contact of a given
    # id wins, as a linear search would find it.
    by_wa = {c.wa_id: c for c in reversed(contacts) if c.wa_id}
    by_user = {c.user_id: c for c in reversed(contacts) if c.user_id}

    def find(wa_id: str | None, user_id: str | None) -> Contact | None:
        found = by_wa.get(wa_id) if wa_id else None
        if found is None and user_id:
            found = by_user.get(user_id)
        return found

    return find


# --- the json.loads path, for bodies msgspec cannot read (lone surrogates) --------------


def _reject_constant(name: str) -> float:
    raise DecodeError(f"invalid JSON: {name} is not a JSON number")


def _decode_fallback(data: bytes, exc: msgspec.DecodeError) -> Notification:
    if not _LONE_SURROGATE.search(data):
        raise _invalid_json(data, exc) from None
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except RecursionError:
        raise _too_deep() from None
    except json.JSONDecodeError as err:
        raise DecodeError(f"invalid JSON: {err.msg}", position=err.pos) from None
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
    # Every part is re-encoded as ASCII JSON (lone surrogates become \udXXX escapes) for
    # its raw bytes, and converted to the same Structs as the msgspec path.
    events: list[Event] = []
    problems: list[Problem] = []
    for i, entry in enumerate(entries):
        path = f"entry[{i}]"
        if not isinstance(entry, dict) or entry.get("id") is None:
            problems.append(Problem(path, "bad entry: no id (WABA id)", _dump(entry)))
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
    """The per-change logic of ``_Fanout.change`` over ``json.loads`` objects."""

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

    def _whole(self) -> None:
        self.events.append(ChangeEvent(self.field, self.waba_id, self.phone_number_id,
                                       self.entry_time, None, None, _dump(self.value),
                                       self.vpath))  # fmt: skip

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
            if field in KNOWN_FIELDS:
                self.problems.append(Problem(self.vpath, f"bad {field} value: not an object",
                                             _dump(value), field, self.waba_id))  # fmt: skip
            else:
                self._whole()
            return
        meta = self._convert(value.get("metadata") or {}, Metadata, self.vpath, "metadata")
        self.phone_number_id = meta.phone_number_id if meta else None
        display = meta.display_phone_number if meta else None
        find = _finder([
            c
            for k, obj in enumerate(_array(value.get("contacts")))
            if (c := self._convert(obj, Contact, f"{self.vpath}.contacts[{k}]", "contact"))
        ])  # fmt: skip
        found = False
        for key, _decoder, what in _ARRAYS:
            if not isinstance(value.get(key), list):
                continue
            found = True
            for k, obj in enumerate(value[key]):
                self._item(key, what, obj, f"{self.vpath}.{key}[{k}]", find, display)
        if not found:
            self._whole()

    def _item(
        self,
        key: str,
        what: str,
        obj: Any,
        path: str,
        find: _Find | None,
        display: str | None,
    ) -> None:
        pid = self.phone_number_id
        if key == "messages":
            m = self._convert(obj, Message, path, what)
            if m is not None:
                c = find(m.from_, m.from_user_id) if find else None
                self.events.append(MessageEvent(self.field, self.waba_id, pid, display, c, m,
                                                _dump(obj), path))  # fmt: skip
        elif key == "statuses":
            s = self._convert(obj, Status, path, what)
            if s is not None:
                c = find(s.recipient_id, s.recipient_user_id) if find else None
                self.events.append(StatusEvent(self.field, self.waba_id, pid, display, c, s,
                                               _dump(obj), path))  # fmt: skip
        else:
            item = self._convert(obj, ITEM_TYPES[key], path, what)
            if item is not None:
                self.events.append(ChangeEvent(self.field, self.waba_id, pid, self.entry_time,
                                               key, item, _dump(obj), path))  # fmt: skip


def _array(obj: object) -> list[Any]:
    return obj if isinstance(obj, list) else []
