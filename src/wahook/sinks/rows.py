"""From decoded events to the values the store keeps: keys, ranks, and text PostgreSQL accepts.

Pure functions shared by the PostgreSQL sink and the in-memory reference model, so both
derive the same facts from an event; each applies its own merge rules.

Merge rules (they make the stored state a function of the *set* of events seen):

- ``dedup_key``: one audit row per (phone number or WABA, wamid, status) for statuses, per
  (..., wamid) for messages, per exact item bytes for every other event.
- ``content_key``: hash of the item bytes. Where two different items share a dedup key,
  the one with the least content key provides the stored payload.
- ``status_key``: rank, status, timestamp, content key. The greatest decides
  ``message_status`` (and its errors); per-status timestamps keep the least.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import msgspec

from wahook.parse import ChangeEvent, MessageEvent, Problem, StatusEvent, to_epoch
from wahook.parse.models import Message, Status
from wahook.verdict import Verdict

# sent < delivered < read < played; failed is terminal. Unknown statuses rank 0.
STATUS_RANK: dict[str, int] = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}
# Statuses with their own <status>_at column.
TIMED_STATUSES = ("sent", "delivered", "read", "played", "failed")

_SEP = b"\x1f"


def _hash(*parts: bytes) -> bytes:
    return hashlib.blake2b(_SEP.join(parts), digest_size=16).digest()


def _b(value: str | None) -> bytes:
    return b"\x00" if value is None else value.encode("utf-8", "surrogatepass")


def scope(ev: StatusEvent | MessageEvent | ChangeEvent | Problem) -> bytes:
    """Who an event belongs to before routing: its phone number id, else its WABA id."""
    if ev.phone_number_id:
        return b"p:" + _b(ev.phone_number_id)
    return b"w:" + _b(ev.waba_id)


def content_key(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


def dedup_key(ev: StatusEvent | MessageEvent | ChangeEvent) -> bytes:
    where = f"p:{ev.phone_number_id}" if ev.phone_number_id else f"w:{ev.waba_id}"
    if isinstance(ev, StatusEvent):  # the hot path: one string, one encode, one hash
        text = f"s\x1f{where}\x1f{ev.status.id}\x1f{ev.status.status}"
    elif isinstance(ev, MessageEvent):
        text = f"m\x1f{where}\x1f{ev.message.id}"
    else:
        return _hash(b"c", _b(where), _b(ev.field), _b(ev.key), ev.raw)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def tenant_key(dkey: bytes, ckey: bytes) -> bytes:
    """Quarantine key of an event of an unknown tenant: every distinct item is kept, even
    two that share a dedup key, so replay can apply each of them."""
    return _hash(b"t", dkey, ckey)


TEST_TRAFFIC = "test traffic (the reserved test phone number id of wahook check)"


def held_back(
    org: int | None, verdict: Verdict, phone_number_id: str | None, waba_id: str | None
) -> tuple[str, str]:
    """The quarantine kind and reason of an event its verdict keeps out of ``org``:
    ``tenant`` (no organization yet), ``unverified`` (no verdict came with the body) or
    ``forged`` (another organization's app secret signed it)."""
    ids = f"phone_number_id={phone_number_id!r} waba_id={waba_id!r}"
    if org is None:
        return "tenant", f"no organization for {ids}"
    if verdict.unverified:
        return "unverified", (
            f"organization {org} ({ids}): the body carried no tenancy verdict "
            "(queued before verdicts existed)"
        )
    return "forged", (
        f"organization {org} ({ids}) is not among those whose app secret signed the body "
        f"(verdict: {verdict.encode()})"
    )


def verdict_key(kind: str, dkey: bytes, ckey: bytes, verdict: str) -> bytes:
    """Quarantine key of an event held back by its verdict: per item *and* verdict, so the
    same item signed by two different tenants is held twice, each copy replayed (or not)
    on its own verdict, whatever order they came in."""
    return _hash(b"v", kind.encode(), dkey, ckey, verdict.encode())


def reply_lock(org: int, wamid: str) -> int:
    """Advisory lock key guarding the replies to one outbound message (a signed bigint)."""
    digest = _hash(b"r", str(org).encode(), _b(wamid))
    return int.from_bytes(digest[:8], "big", signed=True)


def problem_key(p: Problem) -> bytes:
    return _hash(b"q", scope(p), _b(p.field), p.raw)


def epoch(value: object) -> int | None:
    """``wahook.parse.to_epoch``, with a fast path for what Meta sends nearly always: a
    string of at most 10 ASCII digits (Unix seconds), where both give ``int(value)``."""
    if value.__class__ is str and len(value) <= 10 and value.isascii() and value.isdigit():
        return int(value)
    return to_epoch(value)


def status_rank(status: str) -> int:
    return STATUS_RANK.get(status, 0)


def status_key(status: str, timestamp: int | None, ckey: bytes) -> bytes:
    """Total order of the statuses of one message: rank first, then the rest as a tie-break."""
    ts = (timestamp if timestamp is not None else 0).to_bytes(8, "big")
    return bytes((status_rank(status),)) + _b(status) + b"\x00" + ts + ckey


# --- text and JSON PostgreSQL accepts --------------------------------------------------

# In JSON text: an escaped backslash (kept), a valid surrogate pair (kept), \u0000 or a
# lone surrogate (escaped once more, so jsonb stores the six characters as text).
_JSON_ESCAPES = re.compile(
    r"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)


def _escape_json(m: re.Match[str]) -> str:
    s = m.group(0)
    if s == "\\\\" or len(s) == 12:
        return s
    return "\\" + s


def jsonb_text(raw: bytes) -> tuple[str, bytes | None]:
    """JSON text jsonb accepts, and the raw bytes when that text had to differ from them
    (``\\u0000`` and lone surrogates are spelled out as text; the bytes keep the truth)."""
    if raw.isascii() and b"\\" not in raw:  # the common case: no escape at all, so no \\u
        return raw.decode("ascii"), None
    text = raw.decode("utf-8", "surrogateescape")
    if "\\u" not in text and (text.isascii() or _utf8_clean(text)):
        return text, None
    fixed = _JSON_ESCAPES.sub(_escape_json, text)
    if not _utf8_clean(fixed):
        fixed = fixed.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return fixed, (None if fixed == text else raw)


def _utf8_clean(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: str | None) -> str | None:
    """A string PostgreSQL ``text`` accepts: U+0000 and lone surrogates become ``\\u0000`` /
    ``\\udXXX`` escapes (the item's raw bytes, kept beside, hold the original)."""
    if value is None:
        return None
    if value.isascii() and "\x00" not in value:  # the common case, returned as it is
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\\u0000")
    if value.isascii() or _utf8_clean(value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


_ENCODER = msgspec.json.Encoder()


def json_text(obj: Any) -> str | None:
    """JSON text (for a jsonb column) of a Struct, list or dict; None stays None."""
    if obj is None:
        return None
    try:
        data = _ENCODER.encode(obj)
    except UnicodeEncodeError:  # a lone surrogate somewhere inside
        data = json.dumps(msgspec.to_builtins(obj), ensure_ascii=True).encode()
    text, _ = jsonb_text(data)
    return text


# --- numbers jsonb cannot hold ---------------------------------------------------------

# jsonb keeps numbers as PostgreSQL numeric: at most 131,072 digits before the point (a
# base-10000 weight of 32,767) and 16,383 after; an exponent beyond 2^30 is refused as it
# is read. The decoder accepts any JSON number in a key it ignores, so an item may hold
# one: PostgreSQL then refuses the whole statement ("value overflows numeric format").
UNHOLDABLE_NUMBER = (
    "a number PostgreSQL cannot hold (jsonb numeric: 131,072 digits before the point, 16,383 after)"
)
_NUMERIC_WEIGHT_DIGITS = 131_072
_NUMERIC_SCALE_MAX = 16_383
_NUMERIC_EXPONENT_MAX = 2**30 - 1
_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?(?:[eE]([-+]?)0*(\d*))?")


def numeric_fits(literal: str) -> bool:
    """True when PostgreSQL's numeric (so jsonb) holds the JSON number ``literal``."""
    m = _NUMBER.fullmatch(literal)
    if m is None:
        return True  # not a JSON number: not for this check to judge
    whole, frac, sign, exp = m.group(1), m.group(2) or "", m.group(3), m.group(4) or ""
    if len(exp) > 10:
        return False
    e = int(exp) if exp else 0
    if e > _NUMERIC_EXPONENT_MAX:
        return False
    if sign == "-":
        e = -e
    if len(frac) - e > _NUMERIC_SCALE_MAX:
        return False
    digits = whole + frac
    significant = digits.lstrip("0")
    if not significant:
        return True  # zero: no weight
    # Decimal weight of the first significant digit (0 for the units).
    weight = len(whole) - 1 - (len(digits) - len(significant)) + e
    return weight < _NUMERIC_WEIGHT_DIGITS


# Without an exponent of 5 digits or more (|e| <= 9,999), a number needs over 16,383 - 9,999
# digits after the point, or many more before it, to overflow: a long item.
_FIVE_DIGIT_EXPONENT = re.compile(rb"[eE][-+]?[0-9]{5}")
_SHORT_ITEM = _NUMERIC_SCALE_MAX - 9_999


def unholdable(raw: bytes) -> bool:
    """True when the item's JSON holds a number PostgreSQL's jsonb cannot hold.

    Exact. The PostgreSQL sink does not run it (it finds such items by bisecting a write
    PostgreSQL refused, at no cost to the writes it does not refuse); the reference model
    does, to store what the sink stores."""
    if len(raw) <= _SHORT_ITEM and _FIVE_DIGIT_EXPONENT.search(raw) is None:
        return False  # nearly every item: no number there can overflow
    bad = False

    def number(literal: str) -> None:
        nonlocal bad
        if not bad and not numeric_fits(literal):
            bad = True

    try:
        json.loads(raw, parse_int=number, parse_float=number)
    except (ValueError, RecursionError):
        return False  # not JSON Python reads: PostgreSQL decides
    return bad


# --- facts of one status / one incoming message -----------------------------------------


_NO_FACTS: dict[str, Any] = dict.fromkeys(
    ("error_code", "error_title", "error_message", "errors", "pricing", "conversation_id",
     "conversation")
)  # fmt: skip


def status_facts(s: Status) -> dict[str, Any]:
    """Error and billing facts of a status, as stored on ``messages`` (do not mutate)."""
    first = s.errors[0] if s.errors else None
    conv = s.conversation
    if first is None and conv is None and s.pricing is None:
        return _NO_FACTS
    return {
        "error_code": None if first is None or first.code is None else str(first.code),
        "error_title": clean_text(first.title) if first is not None else None,
        "error_message": clean_text(
            (first.error_data.details if first.error_data else None) or first.message
        )
        if first is not None
        else None,
        "errors": json_text(s.errors) if s.errors else None,
        "pricing": json_text(s.pricing),
        "conversation_id": clean_text(conv.id) if conv is not None else None,
        "conversation": json_text(conv),
    }


def incoming_facts(ev: MessageEvent) -> dict[str, Any]:
    """Columns of ``incoming_messages`` derived from one incoming message."""
    m: Message = ev.message
    media = m.media
    inter = m.interactive
    interactive_type: str | None = None
    interactive_data: str | None = None
    content = m.text_body
    if inter is not None:
        interactive_type = inter.type
        interactive_data = json_text(inter)
        reply = inter.button_reply or inter.list_reply
        if content is None and reply is not None:
            content = reply.title
        if content is None and inter.nfm_reply is not None:
            content = inter.nfm_reply.body
    elif m.button is not None:
        interactive_type = "button"
        interactive_data = json_text(m.button)
    reaction = m.reaction
    if content is None and reaction is not None:
        content = reaction.emoji
    if content is None and m.order is not None:
        content = m.order.text
    if content is None and m.system is not None:
        content = m.system.body
    if content is None and m.location is not None:
        content = m.location.name or m.location.address
    ctx = m.context
    return {
        "from_phone_number": clean_text(m.from_) or "",
        "from_user_id": clean_text(m.from_user_id),
        "profile_name": clean_text(ev.contact.name) if ev.contact is not None else None,
        "message_type": clean_text(m.type) or "unknown",
        "content": clean_text(content),
        "media_id": clean_text(media.id) if media else None,
        "media_mime_type": clean_text(media.mime_type) if media else None,
        "media_sha256": clean_text(media.sha256) if media else None,
        "media_filename": clean_text(media.filename) if media else None,
        "interactive_type": clean_text(interactive_type),
        "interactive_data": interactive_data,
        "reaction_message_id": clean_text(reaction.message_id) if reaction else None,
        "reaction_emoji": clean_text(reaction.emoji) if reaction else None,
        "location": json_text(m.location),
        "contacts": json_text(m.contacts),
        "order_data": json_text(m.order),
        "referral": json_text(m.referral),
        "context_message_id": clean_text(ctx.id) if ctx else None,
        "context_from": clean_text(ctx.from_) if ctx else None,
        "sent_at": ev.timestamp,
        "phone_number_id": clean_text(ev.phone_number_id),
    }
