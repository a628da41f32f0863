"""What the receiver needs to know about a body without decoding its items.

``summarize`` reads the envelope (entry ids, change fields, phone number ids, item counts)
for routing a body to its organization's app secret and for the SQS message attributes.
``split`` cuts a body too large for one queue message into several smaller bodies, each a
valid notification, together holding every item of the original exactly once.

Both leave items as ``msgspec.Raw``: item bytes are copied through unchanged, never
re-encoded, so a split body decodes into the same events as the original (only the JSON
paths differ). Neither raises on a body that is not a notification: ``summarize`` says why
in ``Summary.problem`` and ``split`` raises ``Unsplittable``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import msgspec
from msgspec import Raw

from wahook.parse import DecodeError, envelope
from wahook.parse.models import ITEM_TYPES, VALUE_TYPES
from wahook.parse.surrogates import StandIns

# Arrays of a messaging-style value whose items each become one event. ``contacts`` is not
# among them: contacts only describe the senders, so every piece keeps all of them.
_ITEM_ARRAYS = ("messages", "statuses", *ITEM_TYPES)


_OBJECT = msgspec.json.Decoder(dict[str, Raw])
_RAWS = msgspec.json.Decoder(list[Raw])
_ENCODER = msgspec.json.Encoder()
_NOT_ONE = "not a WhatsApp notification"


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """The envelope of one body. ``problem`` is None for a WhatsApp notification, else the
    reason it is not one (the body is still kept: see ``wahook.receiver.core``)."""

    sha256: str
    size: int
    waba_ids: tuple[str, ...] = ()
    phone_number_ids: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    entries: int = 0
    changes: int = 0
    messages: int = 0
    statuses: int = 0
    problem: str | None = None


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def summarize(body: bytes) -> Summary:
    """The envelope of ``body``; never raises. Read by ``wahook.parse.envelope``, so with
    the decoder's tolerance: lone surrogates, entries without an id, broken changes."""
    digest = hashlib.sha256(body).hexdigest()
    try:
        entries = envelope(body)
    except DecodeError as exc:
        reason = str(exc)
        if not reason.startswith(_NOT_ONE):
            reason = f"{_NOT_ONE}: {reason}"
        return Summary(digest, len(body), problem=reason)
    wabas: list[str] = []
    phones: list[str] = []
    fields: list[str] = []
    changes = messages = statuses = 0
    for entry in entries:
        if entry.waba_id:
            wabas.append(entry.waba_id)
        for change in entry.changes:
            changes += 1
            fields.append(change.field)
            if change.phone_number_id:
                phones.append(change.phone_number_id)
            messages += change.messages
            statuses += change.statuses
    return Summary(
        digest,
        len(body),
        waba_ids=_unique(wabas),
        phone_number_ids=_unique(phones),
        fields=_unique(fields),
        entries=len(entries),
        changes=changes,
        messages=messages,
        statuses=statuses,
    )


class Unsplittable(ValueError):
    """The body cannot be cut into notifications of the size asked for."""


@dataclasses.dataclass(slots=True)
class _Unit:
    """One piece of one change: the entry it belongs to and the change's JSON bytes."""

    entry: int
    change: bytes


def split(body: bytes, limit: int) -> list[bytes]:
    """``body`` as notifications of at most ``limit`` bytes each, holding every item once.

    Changes are packed in document order; a change too large on its own is cut along its
    item arrays (``messages``, ``statuses``, ``history`` ...), each piece keeping the rest
    of the value (``metadata``, ``contacts``). Raises ``Unsplittable`` when the body is not
    a notification or a single item is larger than ``limit`` allows.

    Lone surrogate escapes, which msgspec refuses, are read through the stand-ins of
    ``wahook.parse.surrogates`` and put back in each part: items keep their exact bytes
    (a key with a lone surrogate outside any item is re-encoded with its stand-in).
    """
    if len(body) <= limit:
        return [body]
    try:
        return _split(body, limit)
    except Unsplittable:
        try:
            stand_ins = StandIns.of(body)
        except DecodeError:
            stand_ins = None
        if stand_ins is None:
            raise
    return [stand_ins.raw(part) for part in _split(stand_ins.data, limit)]


def _split(body: bytes, limit: int) -> list[bytes]:
    try:
        top = _OBJECT.decode(body)
        entries = [_OBJECT.decode(raw) for raw in _RAWS.decode(top.pop("entry"))]
        changes = [_RAWS.decode(e.pop("changes")) for e in entries]
    except (msgspec.DecodeError, RecursionError, KeyError) as exc:
        raise Unsplittable(f"not a notification that can be split: {exc}") from None
    shell = _ENCODER.encode({**top, "entry": []})
    heads = [_ENCODER.encode({**e, "changes": []}) for e in entries]
    # Fixed cost of a part: the shell plus, per entry present, its head and commas.
    room = limit - len(shell)
    units: list[_Unit] = []
    for i, raws in enumerate(changes):
        for raw in raws:
            budget = room - len(heads[i]) - 1
            if len(raw) <= budget:
                units.append(_Unit(i, bytes(raw)))
            else:
                units.extend(_Unit(i, piece) for piece in _cut_change(raw, budget))
    return [_encode(top, entries, part) for part in _pack(units, heads, room)]


def _pack(units: list[_Unit], heads: list[bytes], room: int) -> Iterator[list[_Unit]]:
    part: list[_Unit] = []
    used = 0
    for unit in units:
        cost = len(unit.change) + 1
        if not part or part[-1].entry != unit.entry:
            cost += len(heads[unit.entry]) + 1
        if part and used + cost > room:
            yield part
            part, used = [], 0
            cost = len(unit.change) + len(heads[unit.entry]) + 2
        part.append(unit)
        used += cost
    if part:
        yield part


def _encode(top: dict[str, Raw], entries: list[dict[str, Raw]], part: list[_Unit]) -> bytes:
    grouped: list[dict[str, object]] = []
    last = -1
    for unit in part:
        if unit.entry != last:
            grouped.append({**entries[unit.entry], "changes": []})
            last = unit.entry
        changes = grouped[-1]["changes"]
        assert isinstance(changes, list)
        changes.append(Raw(unit.change))
    return _ENCODER.encode({**top, "entry": grouped})


def _cut_change(raw: Raw, budget: int) -> list[bytes]:
    """One change larger than ``budget`` as several changes of the same field, each with
    a share of the value's items and a copy of everything else in the value."""
    try:
        change = _OBJECT.decode(raw)
        field = msgspec.json.decode(change["field"], type=str)
        value = _OBJECT.decode(change["value"])
    except (msgspec.DecodeError, RecursionError, KeyError) as exc:
        raise Unsplittable(f"a change too large to queue cannot be split: {exc}") from None
    if field in VALUE_TYPES:
        raise Unsplittable(f"a {field} change of {len(raw)} bytes cannot be split")
    items: list[tuple[str, bytes]] = []
    for key in _ITEM_ARRAYS:
        if key in value:
            try:
                raws = _RAWS.decode(value.pop(key))
            except msgspec.DecodeError:
                raise Unsplittable(f"value.{key} is not an array") from None
            items.extend((key, bytes(r)) for r in raws)
    if not items:
        raise Unsplittable(f"a {field} change of {len(raw)} bytes has no items to split on")
    rest = {k: v for k, v in change.items() if k != "value"}
    base = len(_ENCODER.encode({**rest, "value": value}))
    keys_cost = sum(len(k) + 4 for k in _ITEM_ARRAYS)  # "key":[ ... ], per array present
    room = budget - base - keys_cost
    pieces: list[bytes] = []
    current: dict[str, list[Raw]] = {}
    used = 0
    for key, item in items:
        if len(item) + 1 > room:
            raise Unsplittable(f"one {key} item of {len(item)} bytes exceeds the message size")
        if current and used + len(item) + 1 > room:
            pieces.append(_ENCODER.encode({**rest, "value": {**value, **current}}))
            current, used = {}, 0
        current.setdefault(key, []).append(Raw(item))
        used += len(item) + 1
    if current:
        pieces.append(_ENCODER.encode({**rest, "value": {**value, **current}}))
    return pieces
