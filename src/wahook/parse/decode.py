"""``decode(body) -> Notification``: one POST body into typed events, never losing siblings.

How tolerance is built in (not caught after the fact):

1. One msgspec pass reads the envelope — entries, changes, each value's ``metadata`` — and
   leaves every item (message, status, contact, call ...) as ``msgspec.Raw``, a view into
   the body. A body that is not JSON here raises ``DecodeError``.
2. Each item is then decoded on its own from its ``Raw``. A bad item becomes a ``Problem``
   (JSON path, reason, raw bytes) and its siblings are still events.
3. Only if that envelope does not fit (an entry without ``changes``, a change without
   ``field``, a value that is not an object ...) is the body read again one entry and one
   change at a time, so the broken part is a problem and the rest still decodes. An entry
   without a usable ``id`` is a problem of the entry alone (its ``id`` and other keys, not
   its changes, as raw bytes); its changes still decode, with ``waba_id`` ``""``: their
   ``metadata.phone_number_id`` is what routes them.
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
- ``\\u0000`` decodes to U+0000. Lone surrogates (``\\ud800``), in keys or values, are
  kept too: msgspec refuses them, so each is swapped for a stand-in it reads and swapped
  back afterwards (``surrogates.StandIns``). The body decodes exactly as any other: the same
  rules, every ``raw`` the exact bytes sent, and the parts without one unchanged.
- Nesting deeper than the interpreter's recursion limit rejects the body with
  ``DecodeError``.
- ``from``/``wa_id``/``recipient_id`` may be ``""`` (BSUID users): kept as ``""``; see
  ``Message.sender`` for the identity to key on.
- A value of a field wahook does not know is kept whole (``ChangeEvent`` with ``value``
  None and its raw bytes), whatever its JSON type, unless it holds items to fan out. (A
  known messaging field whose item arrays are all empty gives nothing: it carries none.)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
from wahook.parse.surrogates import StandIns
from wahook.parse.timestamps import to_epoch

OBJECT = "whatsapp_business_account"
_BOM = b"\xef\xbb\xbf"
_AT_BYTE = re.compile(r"\(byte (\d+)\)")
# What decoding one part can raise; each becomes a problem of that part only. (ValueError
# covers the Unicode errors; msgspec raises none on the bytes decode() hands it.)
_PART_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError, ValueError)
# The start of the reason of a DecodeError that only a defect of wahook can cause.
UNEXPECTED = "wahook could not decode this body (a defect of wahook, please report it): "

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


class _LooseEnvelope(Struct, frozen=True, gc=False):
    object: str
    entry: list[Raw]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_RAW_ENVELOPE = msgspec.json.Decoder(_RawEnvelope)
_LOOSE_ENVELOPE = msgspec.json.Decoder(_LooseEnvelope)
_MEMBERS = msgspec.json.Decoder(dict[str, Raw])
_RAWS = msgspec.json.Decoder(list[Raw])
_ID = msgspec.json.Decoder(str | int | None)
_ANY = msgspec.json.Decoder()
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
    — decodes: broken items are listed in ``Notification.problems``. No other exception
    escapes, whatever the bytes.
    """
    data = _checked(body)
    try:
        return _readable(data, _decode, _restore)
    except DecodeError:
        raise
    except Exception as exc:  # the guard of last resort, see below
        raise _unexpected(exc) from exc


def envelope(body: bytes | bytearray | memoryview | str) -> list[EnvelopeEntry]:
    """The routing facts of a body without decoding its items: each entry's WABA id and,
    per change, its field, ``metadata.phone_number_id`` and how many messages and statuses
    it holds. Read with ``decode``'s tolerance (lone surrogates, entries without an id, bad
    changes skipped); raises ``DecodeError`` where ``decode`` would, and nothing else."""
    data = _checked(body)
    try:
        return _readable(data, _read_envelope, _restore_envelope)
    except DecodeError:
        raise
    except Exception as exc:  # as in decode()
        raise _unexpected(exc) from exc


class EnvelopeChange(Struct, frozen=True, gc=False):
    """One change of an ``envelope``: ``phone_number_id`` None (and no counts) for a
    one-object field (template, account ... updates) or a value that is not an object."""

    field: str
    phone_number_id: str | None
    messages: int
    statuses: int


class EnvelopeEntry(Struct, frozen=True, gc=False):
    waba_id: str  # "" for an entry without one
    changes: list[EnvelopeChange]


def _checked(body: bytes | bytearray | memoryview | str) -> bytes:
    data = body if type(body) is bytes else _to_bytes(body)
    if data[:3] == _BOM:
        data = data[3:]
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("body is not valid UTF-8", position=exc.start) from None
    return data


def _unexpected(exc: Exception) -> DecodeError:
    # Tolerance is built part by part, and the fuzz suite holds that nothing gets here;
    # should a defect let an exception through, the reader still gets the one error a bad
    # body gives (its raw bytes are then kept whole), never a crash.
    return DecodeError(f"{UNEXPECTED}{type(exc).__name__}: {exc}")


class _Unreadable(Exception):
    """msgspec refused the bytes themselves, not their shape."""

    def __init__(self, error: msgspec.DecodeError) -> None:
        self.error = error


R = TypeVar("R")


def _readable(data: bytes, read: Callable[[bytes], R], restore: Callable[[R, StandIns], R]) -> R:
    """``read(data)``; when msgspec cannot read ``data`` because of lone surrogates, ``read``
    of ``data`` with stand-ins for them, restored; else ``data`` is not JSON."""
    try:
        return read(data)
    except _Unreadable as exc:
        stand_ins = StandIns.of(data)
        if stand_ins is None:
            raise _invalid_json(data, exc.error) from None
    try:
        return restore(read(stand_ins.data), stand_ins)
    except _Unreadable as exc:
        # Stand-ins keep every byte offset, so the position is right for the body as sent.
        raise _invalid_json(data, exc.error) from None


def _strict(data: bytes) -> _Envelope | None:
    """The envelope in its usual shape; None when it has another (read it loosely then)."""
    try:
        envelope = _ENVELOPE.decode(data)
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError as exc:
        raise _Unreadable(exc) from None
    except RecursionError:
        raise _too_deep() from None
    if envelope.object != OBJECT:
        raise _wrong_object(envelope.object)
    return envelope


def _decode(data: bytes) -> Notification:
    envelope = _strict(data)
    if envelope is None:
        return _decode_loose(data)
    out = _Fanout(data)
    for i, entry in enumerate(envelope.entry):
        waba_id = entry.id if isinstance(entry.id, str) else str(entry.id)
        entry_time = None if entry.time is None else to_epoch(entry.time)
        for j, change in enumerate(entry.changes):
            out.change(change.field, change.value, None, waba_id, entry_time, i, j)
    return Notification(out.events, out.problems)


def _read_envelope(data: bytes) -> list[EnvelopeEntry]:
    envelope = _strict(data)
    if envelope is None:
        return [
            EnvelopeEntry(waba_id, [_facts(c[1], c[2]) for c in changes])
            for _, waba_id, _, changes in _loose_entries(_loose_envelope(data), _ignore)
        ]
    return [
        EnvelopeEntry(str(entry.id), [_facts(c.field, c.value) for c in entry.changes])
        for entry in envelope.entry
    ]


def _facts(field: str, value: _Value | None) -> EnvelopeChange:
    if value is None or field in VALUE_TYPES:
        return EnvelopeChange(field, None, 0, 0)
    meta = value.metadata
    pnid = meta.phone_number_id if meta is not None else None
    return EnvelopeChange(field, pnid, len(value.messages or ()), len(value.statuses or ()))


def _restore_envelope(entries: list[EnvelopeEntry], s: StandIns) -> list[EnvelopeEntry]:
    out = []
    for entry in entries:
        changes = [
            EnvelopeChange(s.text(c.field), s.text(c.phone_number_id), c.messages, c.statuses)
            for c in entry.changes
        ]
        out.append(EnvelopeEntry(s.text(entry.waba_id), changes))
    return out


def _ignore(*args: Any) -> None:
    pass


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
    envelope = _loose_envelope(data)
    out = _Fanout(data)
    for i, waba_id, entry_time, changes in _loose_entries(envelope, out.problem):
        for j, field, value, raw_value in changes:
            out.change(field, value, raw_value, waba_id, entry_time, i, j)
    return Notification(out.events, out.problems)


def _loose_envelope(data: bytes) -> _LooseEnvelope:
    try:
        envelope = _LOOSE_ENVELOPE.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"not a WhatsApp notification: {_reason(exc)}") from None
    except msgspec.DecodeError as exc:
        # The typed pass stopped at a validation error before reaching broken JSON.
        raise _Unreadable(exc) from None
    except RecursionError:
        raise _too_deep() from None
    if envelope.object != OBJECT:
        raise _wrong_object(envelope.object)
    return envelope


_Changes = Iterator[tuple[int, str, "_Value | None", Raw]]


def _loose_entries(
    envelope: _LooseEnvelope, problem: Callable[..., None]
) -> Iterator[tuple[int, str, int | None, _Changes]]:
    """Each readable entry: index, WABA id, time, and its readable changes (index, field,
    value or None when it is not a messaging-style object, raw value). What cannot be read
    is passed to ``problem`` as it is met, so problems stay in document order."""
    for i, raw_entry in enumerate(envelope.entry):
        path = f"entry[{i}]"
        try:
            members = _MEMBERS.decode(raw_entry)
            raw_changes = members.get("changes")
            changes = _RAWS.decode(raw_changes) if raw_changes is not None else []
        except _PART_ERRORS as exc:
            problem(path, f"bad entry: {_reason(exc)}", raw_entry)
            continue
        waba_id = _waba_id(members.get("id"))
        if waba_id is None:
            # Recorded on its own, without the changes: those are decoded below, so the
            # problem's bytes must not look like items lost with it.
            head = msgspec.json.encode({k: v for k, v in members.items() if k != "changes"})
            problem(path, "entry without a WABA id (`id`): its changes are decoded without "
                    "one", Raw(head))  # fmt: skip
            waba_id = ""
        yield (
            i,
            waba_id,
            _entry_time(members.get("time")),
            _loose_changes(path, changes, waba_id, problem),
        )


def _loose_changes(
    path: str, changes: list[Raw], waba_id: str, problem: Callable[..., None]
) -> _Changes:
    for j, raw_change in enumerate(changes):
        try:
            change = _RAW_CHANGE.decode(raw_change)
        except _PART_ERRORS as exc:
            problem(f"{path}.changes[{j}]", f"bad change: {_reason(exc)}", raw_change,
                    waba_id=waba_id)  # fmt: skip
            continue
        field = change.field
        try:
            value: _Value | None = _VALUE.decode(change.value)
        except _PART_ERRORS as exc:
            if field in KNOWN_FIELDS and field not in VALUE_TYPES:
                problem(f"{path}.changes[{j}].value", f"bad {field} value: {_reason(exc)}",
                        change.value, field, waba_id)  # fmt: skip
                continue
            value = None  # a one-object field, or a field wahook does not know
        yield j, field, value, change.value


def _waba_id(raw: Raw | None) -> str | None:
    """An entry's ``id`` as text; None when it is missing, null or not a string or number."""
    if raw is None:
        return None
    try:
        found = _ID.decode(raw)
    except _PART_ERRORS:
        return None
    return found if found is None or isinstance(found, str) else str(found)


def _entry_time(raw: Raw | None) -> int | None:
    if raw is None:
        return None
    try:
        return to_epoch(_ANY.decode(raw))
    except _PART_ERRORS:
        return None


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
        if not (messages or statuses or any(others)) and field not in KNOWN_FIELDS:
            return False  # empty arrays only: a value wahook does not know is kept whole
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


# --- lone surrogates: back from the stand-ins -----------------------------------------


def _restore(n: Notification, s: StandIns) -> Notification:
    """The events and problems of a body decoded with stand-ins, as the body was sent."""
    problems = [
        Problem(p.path, p.reason, s.raw(p.raw), s.text(p.field), s.text(p.waba_id),
                s.text(p.phone_number_id))
        for p in n.problems
    ]  # fmt: skip
    events: list[Event] = []
    contacts: dict[int, Contact | None] = {}
    for ev in n.events():
        try:
            events.append(_restore_event(ev, s, contacts))
        except _PART_ERRORS as exc:  # the Struct refused its own strings back: never seen
            problems.append(Problem(ev.path, f"bad {ev.kind}: {_reason(exc)}", s.raw(ev.raw),
                                    s.text(ev.field), s.text(ev.waba_id),
                                    s.text(ev.phone_number_id)))  # fmt: skip
    return Notification(events, problems)


def _restore_event(ev: Event, s: StandIns, contacts: dict[int, Contact | None]) -> Event:
    changes: dict[str, Any] = {}
    raw = s.raw(ev.raw)
    if raw is not ev.raw:  # the item held a stand-in: its strings may too
        changes["raw"] = raw
        if isinstance(ev, MessageEvent):
            changes["message"] = s.struct(ev.message)
        elif isinstance(ev, StatusEvent):
            changes["status"] = s.struct(ev.status)
        else:
            changes["value"] = s.struct(ev.value)
    names: tuple[str, ...] = ("field", "waba_id", "phone_number_id")
    if not isinstance(ev, ChangeEvent):
        names += ("display_phone_number",)
        if ev.contact is not None:
            key = id(ev.contact)
            if key not in contacts:
                contacts[key] = s.struct(ev.contact)
            if contacts[key] is not ev.contact:
                changes["contact"] = contacts[key]
    for name in names:
        old = getattr(ev, name)
        new = s.text(old)
        if new is not old:
            changes[name] = new
    return msgspec.structs.replace(ev, **changes) if changes else ev


# --- one stored item ------------------------------------------------------------------


def decode_item(raw: bytes | bytearray | memoryview, typ: type[T]) -> T:
    """One item's raw bytes (an event's or a problem's ``raw``, as stored) as ``typ`` (a
    Struct of ``wahook.parse.models``), with the rules of ``decode``: unknown keys ignored,
    lone surrogates kept in keys and values. Pure; raises only ``DecodeError``."""
    data = bytes(raw)
    decoder = _DECODERS.get(typ) or msgspec.json.Decoder(typ)
    try:
        item: T = _item(decoder, data)
    except DecodeError:
        raise
    except _PART_ERRORS as exc:
        raise DecodeError(f"not a {typ.__name__}: {_reason(exc)}") from None
    return item


def _item(decoder: msgspec.json.Decoder[Any], data: bytes) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        stand_ins = StandIns.of(data)
        if stand_ins is None:
            raise _invalid_json(data, exc) from None
        return stand_ins.struct(decoder.decode(stand_ins.data))
