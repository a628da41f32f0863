"""The PostgreSQL sink: one transaction per batch, idempotent and order-independent.

>>> sink = PostgresSink(pool)              # an asyncpg pool it does not own
>>> result = await sink.write(records)     # WriteResult: failed ids, counts
>>> await record_outbound(pool, Outbound(organization_id=1, wamid="wamid.X", recipient="31..."))
>>> await sink.replay_quarantine()         # items of tenants configured since

How a batch is written (SQL in ``sinks/sql/*.sql``, parameters only):

1. Route every event to its organization (``TenantRouter``: phone_number_id, then WABA id;
   the cache reloads when the ``organizations`` version counter moves), and apply it only
   if its record's verdict allows that organization (``wahook.verdict``); an item of
   another tenant is quarantined (``forged`` / ``unverified``) and writes nothing else.
2. Merge in Python what shares a key (ON CONFLICT cannot touch a row twice per statement):
   audit rows by dedup key, statuses by (organization, wamid), incoming messages likewise.
3. One statement per table, rows sorted by key, in a fixed table order (audit rows,
   messages, incoming messages, campaign audience last and in one statement), so
   concurrent writers take row locks in the same order and never deadlock. The bulk
   upserts (audit, statuses, incoming) read from per-session staging tables filled by
   binary COPY, which measured faster than UNNEST of parameter arrays; small statements
   use UNNEST.
4. Transient errors (connection loss, serialization failure, deadlock ...) are retried with
   backoff. A batch failing for a reason retrying cannot fix is bisected until only the
   poisonous records remain; those are quarantined whole (raw bytes and reason) when the
   source gave their bytes, else reported failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from wahook.errors import ConfigError, PermanentError, TransientError
from wahook.parse import ChangeEvent, MessageEvent, Problem, StatusEvent, decode_item
from wahook.parse.models import (
    ITEM_TYPES,
    VALUE_TYPES,
    Base,
    Contact,
    Conversation,
    Message,
    Pricing,
    Status,
)
from wahook.reserved import TEST_PHONE_NUMBER_ID, TEST_WABA_ID, is_test_traffic
from wahook.sinks import locks, rows, sql
from wahook.sinks.base import Event, Record, WriteResult
from wahook.verdict import ANY, Verdict

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)
# org (None: no organization), cleaned field, WABA id, phone number id; dedup scope.
_Route = tuple[int | None, str | None, str | None, str | None, str]

# SQLSTATE classes and codes worth a retry.
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_TRANSIENT_CODES = ("55P03", "55006")


class RepliesMoved(TransientError):
    """Another writer replaced a stored incoming message of the batch, changing what it
    replies to, after the batch read it and before the batch locked it. A retry reads it
    again (and locks what it replies to now)."""


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure: the connection, the server, lock contention."""
    import asyncpg

    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES
    if isinstance(exc, asyncpg.DataError):  # a parameter the driver cannot encode
        return False
    return isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError | ConnectionError)


# --- tenant routing -----------------------------------------------------------------------


class TenantRouter:
    """phone_number_id (then WABA id) -> organization id, cached.

    ``refresh`` costs one tiny query: it compares the ``organizations`` version counter
    (bumped by a trigger on every change) and reloads only when it moved, so new and
    changed organizations are seen by the very next batch.
    """

    def __init__(self) -> None:
        self.version: int | None = None
        self.by_phone: dict[str, int] = {}
        # WABA id -> its organizations, oldest first.
        self.by_waba: dict[str, list[int]] = {}

    async def refresh(self, conn: asyncpg.Connection) -> None:
        version = await conn.fetchval(sql.load("tenant_version"))
        if version == self.version:
            return
        by_phone: dict[str, int] = {}
        by_waba: dict[str, list[int]] = {}
        for r in await conn.fetch(sql.load("tenant_load")):
            if r["whatsapp_phone_number_id"]:
                by_phone[r["whatsapp_phone_number_id"]] = r["id"]
            if r["whatsapp_business_account_id"]:
                by_waba.setdefault(r["whatsapp_business_account_id"], []).append(r["id"])
        self.by_phone, self.by_waba, self.version = by_phone, by_waba, version

    def route(
        self,
        phone_number_id: str | None,
        waba_id: str | None,
        allowed: frozenset[int] | None = None,
    ) -> int | None:
        """The organization of an item: its phone number's; else, by WABA id, the oldest
        organization of the WABA that ``allowed`` (None: all) contains, or the oldest when
        none is allowed (the caller then refuses it)."""
        if phone_number_id:
            org = self.by_phone.get(phone_number_id)
            if org is not None:
                return org
        if waba_id:
            orgs = self.by_waba.get(waba_id)
            if not orgs:
                return None
            if allowed is not None:
                for org in orgs:
                    if org in allowed:
                        return org
            return orgs[0]
        return None


# --- what one write carries -----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Item:
    """Events and problems with their provenance (source message id, receipt time)."""

    source_id: str | None
    received_at: float | None
    events: Sequence[Event]
    problems: Sequence[Problem] = ()
    verdict: Verdict = ANY


# A merged ``messages`` row of statuses (a list, in the column order of
# wahook_stage_statuses): org, wamid, phone, user id, status, rank, status key, the five
# <status>_at, error code, title, message, errors, pricing, its key, conversation id,
# conversation, its key, opaque callback data.
_ST_PHONE, _ST_USER, _ST_STATUS, _ST_RANK, _ST_SKEY = 2, 3, 4, 5, 6
_ST_PRICING, _ST_PKEY, _ST_CONV_ID, _ST_CONV, _ST_CKEY, _ST_OPAQUE = 16, 17, 18, 19, 20, 21
# The context wamid in a staged incoming_messages row (wahook_stage_incoming's ctx).
_IN_CONTEXT = 19
# <status>_at column of a status value.
_TIME_INDEX = {name: 7 + i for i, name in enumerate(rows.TIMED_STATUSES)}
_NO_ERRORS = (None, None, None, None)
# A new row after org and wamid: no phone, user id; status "", rank 0, key b""; the rest None.
_ST_BLANK = (None, None, "", 0, b"", *(None,) * 15)


def _least(a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b  # type: ignore[operator]


def _wins(ckey: bytes, raw: bytes, old: list[Any]) -> bool:
    """Whether an item takes the audit row ``old`` of its dedup key: the least content key
    does, except that an item PostgreSQL cannot hold always takes it (so the write fails,
    and bisection quarantines the item; merged away, it would leave no trace). Only
    items whose dedup key is met again with other bytes are checked."""
    if ckey == old[11]:
        return False
    if rows.unholdable(raw):
        return True
    stored: bytes = old[10] if old[10] is not None else old[9].encode()  # its bytes
    if rows.unholdable(stored):
        return False
    return bool(ckey < old[11])


def _context(ev: Event) -> str:
    """What replay needs besides the item bytes to rebuild a quarantined event."""
    ctx: dict[str, Any] = {"kind": ev.kind, "path": ev.path}
    if isinstance(ev, ChangeEvent):
        ctx["key"] = ev.key
        ctx["entry_time"] = ev.entry_time
    else:
        ctx["display_phone_number"] = ev.display_phone_number
        if ev.contact is not None:
            ctx["contact"] = msgspec.to_builtins(ev.contact)
    text, _ = rows.jsonb_text(json.dumps(ctx, ensure_ascii=True).encode())
    return text


class _Prepared:
    """A batch turned into merged rows, sorted by key: tuples for the COPY-staged upserts,
    columns (parameter arrays) for the small statements."""

    def __init__(self, items: Iterable[Item], router: TenantRouter) -> None:
        self.quarantine: dict[bytes, list[Any]] = {}
        self.events: dict[bytes, list[Any]] = {}
        self.statuses: dict[tuple[int, str], list[Any]] = {}
        # (org, wamid) -> the staged incoming_messages row (content key last).
        self.inbound: dict[tuple[int, str], tuple[Any, ...]] = {}
        self.routed = 0
        self.unrouted = 0
        # Items quarantined without an audit row: refused by their verdict, or of an
        # unknown tenant under a verdict that is not ANY.
        self.refused = 0
        self.problems = 0
        # Field names, status values, phone number and WABA ids repeat across a batch.
        self._texts: dict[str | None, str | None] = {None: None}
        # (field, WABA id, phone number id) -> organization, the three cleaned, dedup scope.
        self._routes: dict[tuple[str, str, str | None], _Route] = {}
        self._names: dict[str, tuple[str, int, bytes, int]] = {}
        # JSON texts of pricing and conversation Structs (frozen: equal ones encode alike).
        self._json: dict[Pricing | Conversation, str | None] = {}
        self._router = router
        self.add(items)

    def add(self, items: Iterable[Item]) -> None:
        """Merge ``items`` into the rows (a batch may be added in parts)."""
        fast, router = self._status_event, self._router
        for item in items:
            src, recv, allowed = item.source_id, item.received_at, item.verdict.allowed
            for ev in item.events:
                # Routed statuses (nearly all events) take the fast path; the rest, this.
                if ev.__class__ is not StatusEvent or not fast(ev, src, recv, allowed):
                    self._event(ev, item, router)
            for p in item.problems:
                self._problem(p, item)

    # -- merging ------------------------------------------------------------------

    def _quarantine(self, key: bytes, row: list[Any]) -> None:
        # row: kind, reason, field, waba, pnid, path, context, raw, key, src, recv, verdict
        old = self.quarantine.get(key)
        if old is None:
            self.quarantine[key] = row
            return
        old[9] = _least(old[9], row[9])
        old[10] = _least(old[10], row[10])
        old[5] = _least(old[5], row[5])

    def _problem(self, p: Problem, item: Item) -> None:
        self.problems += 1
        key = rows.problem_key(p)
        self._quarantine(key, ["problem", rows.clean_text(p.reason) or "", rows.clean_text(p.field),
                               rows.clean_text(p.waba_id), rows.clean_text(p.phone_number_id),
                               rows.clean_text(p.path), None, p.raw, key, item.source_id,
                               item.received_at, None])  # fmt: skip

    def _text(self, value: str | None) -> str | None:
        """``rows.clean_text`` of a value likely to repeat in the batch, memoised."""
        try:
            return self._texts[value]
        except KeyError:
            clean = self._texts[value] = rows.clean_text(value)
            return clean

    def _route(self, field: str, waba: str, pnid: str | None) -> _Route:
        text = self._text
        where = f"p:{pnid}" if pnid else f"w:{waba}"  # as rows.dedup_key spells it
        # Test traffic never routes (``_event`` quarantines it), whoever has its ids.
        org = None if is_test_traffic(pnid, waba) else self._router.route(pnid, waba)
        route = (org, text(field), text(waba), text(pnid), where)
        self._routes[(field, waba, pnid)] = route
        return route

    def _name(self, value: str) -> tuple[str, int, bytes, int]:
        """A status value: cleaned, its rank, the prefix of its status keys (as
        ``rows.status_key`` spells them) and its <status>_at index, -1 for none."""
        name = self._text(value) or ""
        rank = rows.status_rank(name)
        prefix = bytes((rank,)) + name.encode("utf-8", "surrogatepass") + b"\x00"
        named = self._names[value] = (name, rank, prefix, _TIME_INDEX.get(name, -1))
        return named

    def _status_event(
        self,
        ev: StatusEvent,
        src: str | None,
        recv: float | None,
        allowed: frozenset[int] | None,
    ) -> bool:
        """A routed status: its audit row and its merge into the ``messages`` row of its
        wamid (keys spelled as ``rows.dedup_key``, ``rows.content_key`` and
        ``rows.status_key`` spell them, hashed without their argument parsing). False (and
        nothing done) when the status has no organization its verdict allows (``allowed``,
        None for all): ``_event`` quarantines it."""
        pnid, waba, field = ev.phone_number_id, ev.waba_id, ev.field
        route = self._routes.get((field, waba, pnid))
        if route is None:
            route = self._route(field, waba, pnid)
        org, cfield, cwaba, cpnid, where = route
        if org is None:
            return False
        if allowed is not None and org not in allowed:
            # Routed by WABA, another organization of the WABA may be the allowed one.
            org = self._router.route(pnid, waba, allowed)
            if org is None or org not in allowed:
                return False
        s = ev.status
        sid, value = s.id, s.status
        raw = ev.raw
        # rows.dedup_key and rows.content_key, inlined.
        h = _BLAKE2B_16.copy()  # = blake2b(data, digest_size=16), without parsing arguments
        h.update(f"s\x1f{where}\x1f{sid}\x1f{value}".encode("utf-8", "surrogatepass"))
        dkey = h.digest()
        h = _BLAKE2B_16.copy()
        h.update(raw)
        ckey = h.digest()
        payload, raw_col = rows.jsonb_text(raw)
        wamid = rows.clean_text(sid) or ""
        named = self._names.get(value)
        if named is None:
            named = self._name(value)
        name, rank, prefix, tindex = named
        ts = rows.epoch(s.timestamp)
        old = self.events.get(dkey)
        if old is None:
            self.events[dkey] = [org, cfield, ev.kind, name, wamid, name, cwaba, cpnid, ts,
                                 payload, raw_col, ckey, dkey, src, recv]  # fmt: skip
        else:
            if _wins(ckey, raw, old):
                old[3], old[8], old[9], old[10], old[11] = name, ts, payload, raw_col, ckey
            old[13] = _least(old[13], src)
            old[14] = _least(old[14], recv)
        self.routed += 1
        row = self.statuses.get((org, wamid))
        if row is None:
            row = self.statuses[(org, wamid)] = [org, wamid, *_ST_BLANK]
        skey = prefix + (ts if ts is not None else 0).to_bytes(8, "big") + ckey
        clean = rows.clean_text
        # Recipient, user id, opaque data: each keeps the least cleaned value seen ("" is
        # absent, as None).
        for v, col in (
            (s.recipient_id, _ST_PHONE),
            (s.recipient_user_id, _ST_USER),
            (s.biz_opaque_callback_data, _ST_OPAQUE),
        ):
            if v:
                row[col] = _least(row[col], clean(v))
        if ts is not None and tindex >= 0:
            cur = row[tindex]
            if cur is None or ts < cur:
                row[tindex] = ts
        pricing, conv = s.pricing, s.conversation
        if s.errors:
            self._facts(row, s, skey)
            return True
        # rows.status_facts of a status without errors: pricing and conversation texts
        # are memoised (equal frozen Structs encode alike), and made only when they win.
        if skey > row[_ST_SKEY]:
            row[_ST_STATUS], row[_ST_RANK], row[_ST_SKEY] = name, rank, skey
            row[12:16] = _NO_ERRORS
        if pricing is not None and (row[_ST_PKEY] is None or skey > row[_ST_PKEY]):
            text = self._json.get(pricing)
            if text is None:
                text = self._json[pricing] = rows.json_text(pricing)
            row[_ST_PRICING], row[_ST_PKEY] = text, skey
        if conv is not None and (row[_ST_CKEY] is None or skey > row[_ST_CKEY]):
            text = self._json.get(conv)
            if text is None:
                text = self._json[conv] = rows.json_text(conv)
            row[_ST_CONV_ID], row[_ST_CONV], row[_ST_CKEY] = clean(conv.id), text, skey
        return True

    def _facts(self, row: list[Any], s: Status, skey: bytes) -> None:
        facts = rows.status_facts(s)
        if skey > row[_ST_SKEY]:
            named = self._names.get(s.status) or self._name(s.status)
            row[_ST_STATUS], row[_ST_RANK], row[_ST_SKEY] = named[0], named[1], skey
            row[12:16] = (facts["error_code"], facts["error_title"], facts["error_message"],
                          facts["errors"])  # fmt: skip
        if facts["pricing"] is not None and (row[_ST_PKEY] is None or skey > row[_ST_PKEY]):
            row[_ST_PRICING], row[_ST_PKEY] = facts["pricing"], skey
        if facts["conversation"] is not None and (row[_ST_CKEY] is None or skey > row[_ST_CKEY]):
            row[_ST_CONV_ID], row[_ST_CONV], row[_ST_CKEY] = (
                facts["conversation_id"],
                facts["conversation"],
                skey,
            )

    def _event(self, ev: Event, item: Item, router: TenantRouter) -> None:
        verdict = item.verdict
        org = router.route(ev.phone_number_id, ev.waba_id, verdict.allowed)
        dkey = rows.dedup_key(ev)
        ckey = rows.content_key(ev.raw)
        if is_test_traffic(ev.phone_number_id, ev.waba_id):
            self.refused += 1
            key = rows.verdict_key("test", dkey, ckey, "")
            row = self._held("test", rows.TEST_TRAFFIC, ev, item, key, verdict)
            row[11] = None  # one row per item, whoever signed it
            self._quarantine(key, row)
            return
        if not verdict.any and (org is None or not verdict.allows(org)):
            # No audit row: it would share the dedup key (and so the stored payload) of
            # the genuine item of that organization.
            self._refuse(ev, item, org, dkey, ckey)
            return
        payload, raw = rows.jsonb_text(ev.raw)
        text = self._text
        if isinstance(ev, StatusEvent):
            wamid: str | None = rows.clean_text(ev.status.id)
            status: str | None = text(ev.status.status)
            ts = rows.epoch(ev.status.timestamp)
        elif isinstance(ev, MessageEvent):
            wamid, status, ts = (
                rows.clean_text(ev.message.id),
                None,
                rows.epoch(ev.message.timestamp),
            )
        else:
            wamid, status, ts = None, None, ev.entry_time
        old = self.events.get(dkey)
        if old is None:
            self.events[dkey] = [org, text(ev.field), ev.kind, text(ev.type), wamid, status,
                                 text(ev.waba_id), text(ev.phone_number_id), ts, payload, raw,
                                 ckey, dkey, item.source_id, item.received_at]  # fmt: skip
        else:
            if _wins(ckey, ev.raw, old):
                old[3], old[8], old[9], old[10], old[11] = (
                    rows.clean_text(ev.type),
                    ts,
                    payload,
                    raw,
                    ckey,
                )
            old[13] = _least(old[13], item.source_id)
            old[14] = _least(old[14], item.received_at)
        if org is None:
            self.unrouted += 1
            _, reason = rows.held_back(None, ANY, ev.phone_number_id, ev.waba_id)
            qkey = rows.tenant_key(dkey, ckey)
            self._quarantine(qkey, self._held("tenant", reason, ev, item, qkey, ANY))
            return
        self.routed += 1  # (routed statuses took _status_event)
        if isinstance(ev, MessageEvent):
            self._message(org, ev, ckey, payload, raw)

    def _held(
        self, kind: str, reason: str, ev: Event, item: Item, key: bytes, verdict: Verdict
    ) -> list[Any]:
        """The quarantine row of an event held back, with what replay needs to rebuild it."""
        return [kind, reason, rows.clean_text(ev.field), rows.clean_text(ev.waba_id),
                rows.clean_text(ev.phone_number_id), rows.clean_text(ev.path), _context(ev),
                ev.raw, key, item.source_id, item.received_at, verdict.encode()]  # fmt: skip

    def _refuse(self, ev: Event, item: Item, org: int | None, dkey: bytes, ckey: bytes) -> None:
        """Quarantine an event its record's verdict does not let into ``org``: ``tenant``
        (no organization yet: replay applies it if the verdict allows the one it finds),
        ``unverified`` (no verdict travelled with the body) or ``forged``."""
        self.refused += 1
        verdict = item.verdict
        kind, reason = rows.held_back(org, verdict, ev.phone_number_id, ev.waba_id)
        key = rows.verdict_key(kind, dkey, ckey, verdict.encode())
        self._quarantine(key, self._held(kind, reason, ev, item, key, verdict))

    def _message(
        self, org: int, ev: MessageEvent, ckey: bytes, payload: str, raw: bytes | None
    ) -> None:
        wamid = rows.clean_text(ev.message.id) or ""
        old = self.inbound.get((org, wamid))
        if old is not None and old[-1] <= ckey:
            return
        # The row is made here, in the preparation's steps, not all at once when staged.
        f = rows.incoming_facts(ev)
        self.inbound[(org, wamid)] = (
            org, wamid, f["from_phone_number"], f["from_user_id"], f["profile_name"],
            f["message_type"], f["content"], f["media_id"], f["media_mime_type"],
            f["media_sha256"], f["media_filename"], f["interactive_type"],
            f["interactive_data"], f["reaction_message_id"], f["reaction_emoji"],
            f["location"], f["contacts"], f["order_data"], f["referral"],
            f["context_message_id"], f["context_from"], f["sent_at"], f["phone_number_id"],
            payload, raw, ckey,
        )  # fmt: skip

    # -- columns ------------------------------------------------------------------

    def quarantine_columns(self) -> list[list[Any]]:
        return _columns((self.quarantine[k] for k in sorted(self.quarantine)), 12)

    # The staged rows go unsorted: the upserts read them ORDER BY their key.
    def event_rows(self) -> list[list[Any]]:
        return list(self.events.values())

    def status_rows(self) -> list[list[Any]]:
        return list(self.statuses.values())

    def inbound_rows(self) -> list[tuple[Any, ...]]:
        """The ``incoming_messages`` rows (staged; the inbound ``messages`` rows are
        derived from them in SQL)."""
        return list(self.inbound.values())


def _columns(table: Iterable[list[Any]], width: int) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in table:
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


@dataclasses.dataclass(slots=True)
class _Applied:
    applied: int = 0
    quarantined: int = 0
    duplicates: int = 0


async def _copy(conn: asyncpg.Connection, table: str, records: Sequence[Sequence[Any]]) -> None:
    await conn.copy_records_to_table(table, records=records, schema_name="pg_temp")


# Records merged between two returns to the event loop while a batch is prepared (~1-2 ms).
_PREPARE_STEP = 64


async def _prepare(items: Sequence[Item], router: TenantRouter) -> _Prepared:
    """``_Prepared(items, router)`` in steps, yielding to the event loop between them.

    Preparing 5,000 events is ~30-40 ms of Python. In one go it would hold up every other
    task on the loop for that long: the other writers' next statements, the HTTP receiver
    of ``wahook serve``, SQS visibility heartbeats. In steps, none waits more than one."""
    prep = _Prepared(items[:_PREPARE_STEP], router)
    for start in range(_PREPARE_STEP, len(items), _PREPARE_STEP):
        await asyncio.sleep(0)
        prep.add(items[start : start + _PREPARE_STEP])
    return prep


async def apply_items(
    conn: asyncpg.Connection, items: Sequence[Item], router: TenantRouter
) -> _Applied:
    """Write ``items`` on ``conn``, inside the caller's transaction."""
    await router.refresh(conn)
    return await apply_prepared(conn, await _prepare(items, router))


async def apply_prepared(conn: asyncpg.Connection, prep: _Prepared) -> _Applied:
    """The statements of a prepared batch, inside the caller's transaction (the SQL share
    of a write: ``benchmarks/bench_sink.py`` times it alone)."""
    done = _Applied(applied=prep.routed, quarantined=prep.unrouted + prep.refused + prep.problems)
    if prep.events or prep.statuses or prep.inbound:
        await conn.execute(sql.load("stage_tables"))
    # (organization, wamid) of the outbound messages whose replies this batch may change:
    # what its incoming messages reply to, and what the stored ones they replace replied
    # to (that message's audience row is recomputed too).
    replies: set[tuple[int, str]] = set()
    if prep.inbound:
        incoming = prep.inbound_rows()
        replies.update((r[0], r[_IN_CONTEXT]) for r in incoming if r[_IN_CONTEXT])
        await _copy(conn, "wahook_stage_incoming", incoming)
        for r in await conn.fetch(sql.load("incoming_contexts")):
            replies.add((r["organization_id"], r["context_message_id"]))
    if replies:  # before any row lock: see wahook.sinks.locks
        await locks.lock_replies(conn, replies)
    if prep.quarantine:
        await conn.fetchval(sql.load("write_quarantine"), *prep.quarantine_columns())
    if prep.events:
        await _copy(conn, "wahook_stage_events", prep.event_rows())
        fresh = await conn.fetchval(sql.load("write_events"))
        done.duplicates = prep.routed + prep.unrouted - int(fresh)
    if prep.statuses:  # into messages; the audience rows mirror them at the end
        await _copy(conn, "wahook_stage_statuses", prep.status_rows())
        await conn.execute(sql.load("write_statuses"))
    if prep.inbound:
        await conn.execute(sql.load("write_inbound"))  # the messages rows, locked
        # What the stored versions reply to now. Another writer may have replaced one
        # (and committed) between the read above and these locks, making it reply to a
        # message whose replies this transaction has not locked and would not recompute.
        for r in await conn.fetch(sql.load("incoming_contexts")):
            if (r["organization_id"], r["context_message_id"]) not in replies:
                raise RepliesMoved(
                    f"incoming message of organization {r['organization_id']} now replies to"
                    f" {r['context_message_id']!r}, not locked by this batch"
                )
        await conn.execute(sql.load("write_incoming"))
    if prep.statuses or replies:  # last: see sync_audience.sql
        keys = sorted(replies)
        await conn.execute(sql.load("sync_audience"), [k[0] for k in keys], [k[1] for k in keys])
    return done


# --- the sink ----------------------------------------------------------------------------


class PostgresSink:
    """``write(batch)`` into PostgreSQL through a pool it does not own.

    ``retries`` transient failures are retried per transaction, sleeping ``backoff``
    seconds doubled each time (with jitter, at most ``max_backoff``). ``quarantine_poison``
    stores a record that fails for a permanent reason in the quarantine (when the record
    has raw bytes) instead of reporting it failed.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        quarantine_poison: bool = True,
        router: TenantRouter | None = None,
    ) -> None:
        self.pool = pool
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.quarantine_poison = quarantine_poison
        self.router = router or TenantRouter()

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        result = WriteResult()
        if batch:
            await self._write_part(list(batch), result)
        return result

    async def _retrying(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, retrying transient failures."""
        delay = self.backoff
        attempt = 0
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except Exception as exc:
                if not is_transient(exc):
                    raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
                attempt += 1
                if attempt > self.retries:
                    raise TransientError(f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(min(self.max_backoff, delay) * (0.5 + random.random()))
                delay *= 2

    async def _write_part(self, records: list[Record], result: WriteResult) -> None:
        try:
            done = await self._apply(records)
        except TransientError as exc:
            result.transient = True
            for r in records:
                result.failed[r.id] = f"transient: {exc}"
            return
        except PermanentError as exc:
            if len(records) > 1:
                mid = len(records) // 2
                await self._write_part(records[:mid], result)
                await self._write_part(records[mid:], result)
            else:
                await self._isolate(records[0], exc, result)
            return
        result.applied += done.applied
        result.quarantined += done.quarantined
        result.duplicates += done.duplicates

    async def _apply(self, records: Sequence[Record]) -> _Applied:
        """Write ``records`` in one transaction (retrying transient failures)."""
        items = [Item(r.id, r.received_at, r.events, r.problems, r.verdict) for r in records]
        router = self.router
        return await self._retrying(lambda conn: apply_items(conn, items, router))

    async def _isolate(self, record: Record, exc: PermanentError, result: WriteResult) -> None:
        """A record PostgreSQL refuses for a permanent reason: find the events it refuses.

        The events are bisected, each part a transaction of its own, until the parts that
        fail are single events; each becomes a ``problem`` with its raw bytes and the
        reason, and every other event is stored. The record counts as committed once the
        problems are (a transient failure on the way reports it failed: redelivered, its
        stored parts apply again as duplicates). Only when its problems alone are refused
        is the record quarantined whole (``_poison``), or, without ``quarantine_poison``,
        reported failed with nothing set aside."""
        if not (self.quarantine_poison and record.events):
            await self._poison(record, str(exc), result)
            return
        done = _Applied()
        refused: list[Problem] = []
        try:
            await self._bisect(record, record.events, done, refused)
            if record.problems or refused:
                rest = dataclasses.replace(record, events=(), problems=[*record.problems, *refused])
                quarantined = (await self._apply([rest])).quarantined
            else:
                quarantined = 0
        except TransientError as failure:
            result.transient = True
            result.failed[record.id] = f"transient: {failure}"
            return
        except PermanentError as failure:
            await self._poison(record, str(failure), result)
            return
        result.applied += done.applied
        result.quarantined += done.quarantined + quarantined
        result.duplicates += done.duplicates

    async def _bisect(
        self, record: Record, events: Sequence[Event], done: _Applied, refused: list[Problem]
    ) -> None:
        """Write the halves of ``events`` (known to fail together), bisecting a half that
        fails again; a single event that fails goes to ``refused``."""
        mid = len(events) // 2
        for part in (events[:mid], events[mid:]):
            if not part:
                continue
            try:
                applied = await self._apply([dataclasses.replace(record, events=part, problems=())])
            except PermanentError as exc:
                if len(part) > 1:
                    await self._bisect(record, part, done, refused)
                else:
                    refused.append(_refused(part[0], exc))
                continue
            done.applied += applied.applied
            done.quarantined += applied.quarantined
            done.duplicates += applied.duplicates

    async def _poison(self, record: Record, reason: str, result: WriteResult) -> None:
        if not (self.quarantine_poison and record.raw):
            result.failed[record.id] = reason
            return
        key = rows.content_key(b"poison\x1f" + record.raw)
        cols = _columns([["poison", rows.clean_text(reason) or "", None, None, None, None, None,
                          record.raw, key, record.id, record.received_at,
                          record.verdict.encode()]], 12)  # fmt: skip
        try:
            await self._retrying(lambda conn: conn.fetchval(sql.load("write_quarantine"), *cols))
        except (TransientError, PermanentError) as exc:
            result.failed[record.id] = f"{reason}; and quarantining it failed: {exc}"
            if isinstance(exc, TransientError):
                result.transient = True
            return
        result.poisoned[record.id] = reason
        result.quarantined += 1

    async def replay_quarantine(
        self, *, chunk: int = 1000, unverified: Verdict | None = None
    ) -> ReplayResult:
        """Apply quarantined items whose organization is now configured and allowed by
        their verdict; mark them resolved. ``unverified``: the verdict an operator gives
        items that arrived without one (None leaves them quarantined).

        Items still without an organization stay quarantined. Safe to run any number of
        times, concurrently with writers: applying is idempotent."""
        return await replay_quarantine(
            self.pool, router=self.router, chunk=chunk, unverified=unverified
        )


def _refused(ev: Event, exc: PermanentError) -> Problem:
    """The problem an event PostgreSQL refuses becomes: where it was, why, its bytes."""
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) == "22003":  # numeric value out of range
        reason = rows.UNHOLDABLE_NUMBER  # as the reference model words it
    else:
        reason = f"PostgreSQL refused this item: {exc}"
    return Problem(ev.path, reason, ev.raw, ev.field, ev.waba_id, ev.phone_number_id)


# --- quarantine replay ----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ReplayResult:
    applied: int = 0
    still_unrouted: int = 0
    undecodable: int = 0
    # Left quarantined: routed to an organization their verdict does not allow, or
    # without a verdict and no operator's word.
    refused: int = 0
    unverified: int = 0


def _decode(raw: bytes, typ: type[T]) -> T:
    """A stored item's raw bytes as ``typ``, by ``decode()``'s rules (lone surrogates in keys
    and values included); raises only ``DecodeError``, a ``ValueError``."""
    return decode_item(raw, typ)


def rebuild_event(row: asyncpg.Record | dict[str, Any]) -> Event:
    """The event a ``tenant`` quarantine row was made from."""
    ctx: dict[str, Any] = json.loads(row["context"]) if row["context"] else {}
    raw: bytes = bytes(row["raw"])
    field, waba, pnid, path = row["field"], row["waba_id"], row["phone_number_id"], ctx["path"]
    kind = ctx["kind"]
    if kind == "change":
        key = ctx.get("key")
        typ = ITEM_TYPES.get(key) if key is not None else VALUE_TYPES.get(field)
        value: Base | None = _decode(raw, typ) if typ is not None else None
        return ChangeEvent(field, waba, pnid, ctx.get("entry_time"), key, value, raw, path)
    contact = msgspec.convert(ctx["contact"], Contact) if ctx.get("contact") else None
    display = ctx.get("display_phone_number")
    if kind == "status":
        status = _decode(raw, Status)
        return StatusEvent(field, waba, pnid, display, contact, status, raw, path)
    message = _decode(raw, Message)
    return MessageEvent(field, waba, pnid, display, contact, message, raw, path)


def _row_verdict(row: asyncpg.Record, unverified: Verdict | None) -> Verdict | None:
    """The verdict a quarantined item is replayed under: its own, or for an item that
    arrived without one, the operator's (None: not replayed)."""
    own = Verdict.decode(row["verdict"])
    if own is None or own.unverified:
        return unverified
    return own


async def replay_quarantine(
    pool: asyncpg.Pool,
    *,
    router: TenantRouter | None = None,
    chunk: int = 1000,
    unverified: Verdict | None = None,
) -> ReplayResult:
    """Apply every open ``tenant`` quarantine row whose organization now exists and is
    allowed by the row's verdict. ``unverified``, given by an operator, is the verdict of
    rows that arrived without one (kind ``unverified``, and ``tenant`` rows without a
    verdict); without it they stay quarantined. ``forged`` rows are never applied."""
    router = router or TenantRouter()
    result = ReplayResult()
    kinds = ["tenant", "unverified"]
    after = 0
    while True:
        found = await pool.fetch(sql.load("quarantine_open"), kinds, after, chunk)
        if not found:
            return result
        after = found[-1]["id"]
        async with pool.acquire() as conn, conn.transaction():
            await router.refresh(conn)
            items, resolved = [], []
            for row in found:
                verdict = _row_verdict(row, unverified)
                if verdict is None:
                    result.unverified += 1
                    continue
                try:
                    ev = rebuild_event(row)
                except (msgspec.ValidationError, msgspec.DecodeError, ValueError, KeyError):
                    result.undecodable += 1
                    continue
                org = router.route(ev.phone_number_id, ev.waba_id, verdict.allowed)
                if org is None:
                    result.still_unrouted += 1
                    continue
                if not verdict.allows(org):
                    result.refused += 1
                    continue
                items.append(
                    Item(row["source_message_id"], row["received_at"], [ev], verdict=verdict)
                )
                resolved.append(row["id"])
            if items:
                await apply_items(conn, items, router)
                await conn.execute(sql.load("quarantine_resolve"), resolved)
                result.applied += len(items)


# --- senders' record of what they sent ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Outbound:
    """A message a sender sent through the Cloud API (the wamid is in the API's answer).

    ``campaign_id`` links it to a campaign: the audience row ``audience_id`` (or, without
    one, the row of (campaign, recipient), created if missing) gets the wamid."""

    organization_id: int
    wamid: str
    recipient: str
    campaign_id: int | None = None
    audience_id: int | None = None
    message_type: str = "template"
    content: str | None = None
    template_name: str | None = None


async def record_outbound(
    pool: asyncpg.Pool | asyncpg.Connection, outbound: Outbound | Sequence[Outbound]
) -> None:
    """Record sent messages in one transaction, merging with statuses already stored.

    Statuses that arrived first are kept (and copied to the audience row); replies that
    arrived first get the campaign as ``context_campaign_id`` and mark the audience row
    replied. Recording the same message again changes nothing."""
    items = sorted(
        [outbound] if isinstance(outbound, Outbound) else list(outbound),
        key=lambda o: (o.organization_id, o.wamid),
    )
    if not items:
        return
    c = rows.clean_text
    orgs = [o.organization_id for o in items]
    wamids = [c(o.wamid) for o in items]
    campaigns = [o.campaign_id for o in items]
    by_id = [o for o in items if o.audience_id is not None]
    by_phone = sorted(
        (o for o in items if o.audience_id is None and o.campaign_id is not None),
        key=lambda o: (o.campaign_id or 0, o.recipient),
    )

    async def run(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await locks.lock_replies(conn, ((o.organization_id, c(o.wamid) or "") for o in items))
            await conn.execute(sql.load("outbound_messages"), orgs, wamids, campaigns,
                               [c(o.recipient) for o in items],
                               [c(o.message_type) for o in items],
                               [c(o.content) for o in items],
                               [c(o.template_name) for o in items])  # fmt: skip
            if by_id:
                await conn.execute(sql.load("outbound_audience_by_id"),
                                   [o.audience_id for o in by_id],
                                   [o.organization_id for o in by_id],
                                   [c(o.wamid) for o in by_id])  # fmt: skip
            if by_phone:
                await conn.execute(sql.load("outbound_audience"),
                                   [o.campaign_id for o in by_phone],
                                   [o.organization_id for o in by_phone],
                                   [c(o.recipient) for o in by_phone],
                                   [c(o.wamid) for o in by_phone])  # fmt: skip
            await conn.execute(sql.load("outbound_link_replies"), orgs, wamids, campaigns)
            # The audience rows last, status and replies at once (see sync_audience.sql). It
            # reads its status keys from the statuses staging table, as the sink stages
            # them (as parameter arrays: +1.5 µs per event on the sink's batches).
            await conn.execute(sql.load("stage_tables"))
            await conn.copy_records_to_table(
                "wahook_stage_statuses", records=list(zip(orgs, wamids, strict=True)),
                columns=["org", "wamid"], schema_name="pg_temp",
            )  # fmt: skip
            await conn.execute(sql.load("sync_audience"), orgs, wamids)

    if hasattr(pool, "acquire"):
        async with pool.acquire() as conn:
            await run(conn)
    else:
        await run(pool)


async def add_organization(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    name: str,
    phone_number_id: str | None = None,
    waba_id: str | None = None,
    verify_token: str | None = None,
    app_secret: str | None = None,
    access_token: str | None = None,
) -> int:
    """Insert an organization; return its id. The reserved test ids
    (``wahook.reserved``) are refused with ``ConfigError``."""
    if phone_number_id == TEST_PHONE_NUMBER_ID or waba_id == TEST_WABA_ID:
        raise ConfigError(
            f"{TEST_PHONE_NUMBER_ID} is reserved for wahook's test traffic (wahook check):"
            " no organization may have it"
        )
    org_id: int = await pool.fetchval(
        sql.load("organization_add"), name, waba_id, phone_number_id, access_token,
        verify_token, app_secret,
    )  # fmt: skip
    return org_id
