"""Doubles and helpers for tests — wahook's own and its users'.

- ``MemorySink``: an in-memory sink obeying the same semantics as ``PostgresSink``.
- ``dump_tables(conn)``: what PostgreSQL holds, in the shape ``MemorySink.dump()`` returns,
  without the columns that differ by nature (surrogate ids, wall-clock times), so two
  stores can be compared for equality.
- Webhook body builders: ``notification(statuses=[status("wamid.1", "read")])`` gives
  the bytes Meta would POST; ``record(body)`` decodes them into a sink ``Record``.

Importing this module needs neither asyncpg nor a database.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from wahook.sinks.base import Record
from wahook.sinks.memory import MemorySink, dump_order

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
CUSTOMER = "16505551234"

# table -> columns left out of a dump: surrogate ids and wall-clock times.
DUMP_EXCLUDE: dict[str, frozenset[str]] = {
    "messages": frozenset({"id", "created_at", "updated_at"}),
    "incoming_messages": frozenset({"id", "created_at"}),
    "campaign_audience": frozenset({"id", "created_at", "updated_at"}),
    "webhook_events": frozenset({"id", "processed_at"}),
    "quarantine": frozenset({"id", "created_at", "resolved_at", "context"}),
}

# jsonb columns, parsed so that PostgreSQL's formatting of JSON does not matter.
_JSONB = frozenset(
    {
        "errors", "pricing", "conversation", "interactive_data", "location", "contacts",
        "order_data", "referral", "payload", "variables",
    }
)  # fmt: skip


def _value(name: str, value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        seconds = value.timestamp()
        return int(seconds) if seconds.is_integer() else seconds
    if name in _JSONB and isinstance(value, str):
        return json.loads(value)
    return value


async def dump_tables(conn: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables wahook writes, comparable with ``MemorySink.dump()``.

    ``conn`` is an asyncpg connection or pool. Rows are sorted, so two dumps are equal
    exactly when the tables hold the same rows."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, exclude in DUMP_EXCLUDE.items():
        # Table names come from the constant above, never from input.
        records = await conn.fetch(f"SELECT * FROM {table}")
        rows = []
        for r in records:
            row = {k: _value(k, v) for k, v in r.items() if k not in exclude}
            if table == "quarantine":
                row["resolved"] = r["resolved_at"] is not None
            rows.append(row)
        out[table] = sorted(rows, key=dump_order)
    return out


# --- webhook bodies -------------------------------------------------------------------


def status(
    wamid: str,
    status: str = "sent",
    timestamp: int | str | None = 1749416383,
    *,
    recipient: str = CUSTOMER,
    **extra: Any,
) -> dict[str, Any]:
    """One ``value.statuses[]`` item (``extra``: pricing, conversation, errors ...)."""
    item: dict[str, Any] = {"id": wamid, "status": status, "recipient_id": recipient}
    if timestamp is not None:
        item["timestamp"] = str(timestamp)
    item.update(extra)
    return item


def text_message(
    wamid: str,
    body: str = "hello",
    timestamp: int | str | None = 1749417200,
    *,
    sender: str = CUSTOMER,
    reply_to: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One incoming text message (``reply_to``: the wamid it replies to)."""
    item: dict[str, Any] = {"from": sender, "id": wamid, "type": "text", "text": {"body": body}}
    if timestamp is not None:
        item["timestamp"] = str(timestamp)
    if reply_to is not None:
        item["context"] = {"from": "15550783881", "id": reply_to}
    item.update(extra)
    return item


def notification(
    *,
    statuses: list[dict[str, Any]] | None = None,
    messages: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    waba_id: str = WABA_ID,
    profile_name: str = "Sheena Nelson",
    value: dict[str, Any] | None = None,
    field: str = "messages",
) -> bytes:
    """The bytes of one POST: a ``messages`` change with these items, or (``value``) a
    change of another ``field``. Non-ASCII text is written as JSON escapes, so a lone
    surrogate is possible, as Meta could send."""
    if value is None:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        }
        if messages:
            value["contacts"] = [{"profile": {"name": profile_name}, "wa_id": CUSTOMER}]
            value["messages"] = messages
        if statuses:
            value["statuses"] = statuses
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": field}]}],
    }
    return json.dumps(body, ensure_ascii=True).encode("ascii")


def record(body: bytes, id: str | None = None, received_at: float | None = 1750000000.0) -> Record:
    """``body`` decoded into a sink ``Record`` (its id defaults to a hash of the body)."""
    import hashlib

    from wahook.parse import decode

    n = decode(body)
    rid = id if id is not None else hashlib.sha256(body).hexdigest()[:16]
    return Record(rid, list(n.events()), list(n.problems), body, received_at)


__all__ = [
    "DUMP_EXCLUDE",
    "MemorySink",
    "dump_tables",
    "notification",
    "record",
    "status",
    "text_message",
]


# --- runtime doubles: synthetic traffic and an in-memory source ---------------------------
# (imports kept here so this section can be read, and moved, on its own)

import itertools  # noqa: E402
import time  # noqa: E402
from collections.abc import Collection, Iterable, Iterator, Sequence  # noqa: E402

from wahook.runtime.source import BaseSource, Message  # noqa: E402

TRAFFIC_PHONE_NUMBER_ID = "106540352242922"
TRAFFIC_WABA_ID = "102290129340398"


def outbound_wamid(n: int) -> str:
    """The wamid of the n-th outgoing message that ``webhook_traffic`` statuses refer to."""
    return f"wamid.HBgLOUT{n:012d}FQIAERgSQUFB"


def _envelope(waba_id: str, phone_number_id: str, arrays: dict[str, Any]) -> bytes:
    metadata = {"display_phone_number": "15551234567", "phone_number_id": phone_number_id}
    value = {"messaging_product": "whatsapp", "metadata": metadata, **arrays}
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _status(n: int, status: str, ts: int) -> dict[str, Any]:
    return {
        "id": outbound_wamid(n),
        "status": status,
        "timestamp": str(ts),
        "recipient_id": f"1650555{n % 1_000_000:06d}",
        "conversation": {"id": f"conv{n // 1000}", "origin": {"type": "marketing"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing"},
    }


def _incoming(n: int, ts: int, reply_to: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    sender = f"5511{n % 1_000_000_000:09d}"
    contact = {"profile": {"name": f"User {n}"}, "wa_id": sender}
    message: dict[str, Any] = {
        "from": sender,
        "id": f"wamid.HBgLIN{n:012d}FQIAEhgU",
        "timestamp": str(ts),
    }
    if reply_to is None:
        message.update(type="text", text={"body": f"hello {n} \u00e9"})
    else:
        message.update(
            context={"from": "15551234567", "id": outbound_wamid(reply_to)},
            type="interactive",
            interactive={"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
        )
    return contact, message


def webhook_traffic(
    bodies: int,
    *,
    phone_number_id: str = TRAFFIC_PHONE_NUMBER_ID,
    waba_id: str = TRAFFIC_WABA_ID,
    start: int = 0,
    now: int | None = None,
) -> Iterator[bytes]:
    """``bodies`` realistic POST bodies, generated lazily and deterministically: single
    statuses (sent, delivered, read), batched status waves of 20, incoming texts, button
    replies to outgoing messages, and batched incoming messages of 10 — 5.25 events per
    body on average. Every event is distinct; statuses and replies refer to
    ``outbound_wamid(20 * i + k)`` for body ``i`` (k < 20)."""
    ts = int(time.time()) if now is None else now
    statuses = ("sent", "delivered", "read")
    arrays: dict[str, Any]
    for i in range(start, start + bodies):
        kind = i % 20
        if kind < 8:  # one status
            arrays = {"statuses": [_status(i * 20, statuses[i % 3], ts)]}
        elif kind < 12:  # a wave of 20 statuses
            arrays = {"statuses": [_status(i * 20 + k, statuses[k % 3], ts) for k in range(20)]}
        elif kind < 19:  # incoming: text, or a button reply to an outgoing message
            contact, message = _incoming(i * 10, ts, i * 20 if kind >= 17 else None)
            arrays = {"contacts": [contact], "messages": [message]}
        else:  # 10 incoming messages at once
            pairs = [_incoming(i * 10 + k, ts, None) for k in range(10)]
            arrays = {"contacts": [c for c, _ in pairs], "messages": [m for _, m in pairs]}
        yield _envelope(waba_id, phone_number_id, arrays)


TRAFFIC_EVENTS_PER_20_BODIES = 8 * 1 + 4 * 20 + 7 * 1 + 1 * 10


def traffic_events(bodies: int) -> int:
    """How many events ``webhook_traffic(bodies)`` holds (``bodies`` a multiple of 20 for
    an exact figure)."""
    whole, rest = divmod(bodies, 20)
    per_kind = [1] * 8 + [20] * 4 + [1] * 7 + [10]
    return whole * TRAFFIC_EVENTS_PER_20_BODIES + sum(per_kind[:rest])


class MemorySource(BaseSource):
    """A source over an iterable of bodies (consumed lazily, ``batch_max`` at a time).
    Records what was acknowledged, failed, and released (handed out, never settled)."""

    def __init__(self, bodies: Iterable[bytes], *, batch_max: int = 100) -> None:
        self._bodies = enumerate(bodies)
        self.batch_max = batch_max
        self.acked = 0
        self.failed: list[str] = []
        self.released: list[str] = []
        self._handed: set[str] = set()

    async def next_batch(self) -> Sequence[Message] | None:
        batch = [
            Message(id=f"mem-{i}", body=b)
            for i, b in itertools.islice(self._bodies, self.batch_max)
        ]
        self._handed.update(m.id for m in batch)
        return batch or None

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        for m in batch:
            self._handed.discard(m.id)
            if m.id in failed:
                self.failed.append(m.id)
            else:
                self.acked += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self.released = sorted(self._handed)
        self._handed.clear()


__all__ += [
    "TRAFFIC_PHONE_NUMBER_ID",
    "TRAFFIC_WABA_ID",
    "MemorySource",
    "outbound_wamid",
    "traffic_events",
    "webhook_traffic",
]
