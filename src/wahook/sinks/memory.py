"""An in-memory sink: a test double, and the reference model of what PostgresSink stores.

It applies one event at a time with the plainest form of each rule, and derives what
PostgreSQL keeps in sync eagerly (audience status and replies, reply campaign links) when
it is dumped. ``dump()`` returns the same shape as ``wahook.testing.dump_tables`` reads
from PostgreSQL, so a test can demand that both hold exactly the same rows.

It has no jsonb, so nothing it is given fails; an event PostgreSQL cannot hold (a number
beyond jsonb's range, ``rows.unholdable``) it turns into the problem PostgresSink makes of
it when PostgreSQL refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wahook.parse import MessageEvent, Problem, StatusEvent
from wahook.reserved import is_test_traffic
from wahook.sinks import rows
from wahook.sinks.base import Event, Record, WriteResult
from wahook.verdict import ANY, Verdict

Row = dict[str, Any]


def _least(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _refused(ev: Event) -> Problem:
    """An event PostgreSQL cannot hold, as the problem PostgresSink makes of it."""
    return Problem(ev.path, rows.UNHOLDABLE_NUMBER, ev.raw, ev.field, ev.waba_id,
                   ev.phone_number_id)  # fmt: skip


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class MemorySink:
    """Holds every table in dicts. ``fail_next`` makes the next writes fail (for tests of
    what a pipeline does when its sink fails)."""

    def __init__(self) -> None:
        self.organizations: dict[int, Row] = {}
        self.campaigns: dict[int, Row] = {}
        self.audience: dict[int, Row] = {}
        self.messages: dict[tuple[int, str], Row] = {}
        self.incoming: dict[tuple[int, str], Row] = {}
        self.events: dict[bytes, Row] = {}
        self.quarantine: dict[bytes, Row] = {}
        self.batches: list[list[str]] = []
        self.fail_next: list[str] = []
        self._next_audience = 1

    # --- configuration -------------------------------------------------------------

    def add_organization(
        self, id: int, *, phone_number_id: str | None = None, waba_id: str | None = None
    ) -> None:
        self.organizations[id] = {"phone_number_id": phone_number_id, "waba_id": waba_id}

    def add_campaign(self, id: int, organization_id: int) -> None:
        self.campaigns[id] = {"organization_id": organization_id}

    def add_audience(self, campaign_id: int, phone_number: str, *, id: int | None = None) -> int:
        aid = id if id is not None else self._next_audience
        self._next_audience = max(self._next_audience, aid) + 1
        org = self.campaigns[campaign_id]["organization_id"]
        self.audience[aid] = {"campaign_id": campaign_id, "organization_id": org,
                              "phone_number": phone_number, "name": None, "variables": None,
                              "whatsapp_message_id": None}  # fmt: skip
        return aid

    def route(
        self, phone_number_id: str | None, waba_id: str | None, verdict: Verdict = ANY
    ) -> int | None:
        if phone_number_id:
            for oid in sorted(self.organizations):
                if self.organizations[oid]["phone_number_id"] == phone_number_id:
                    return oid
        if waba_id:
            on_waba = [o for o in sorted(self.organizations)
                       if self.organizations[o]["waba_id"] == waba_id]  # fmt: skip
            allowed = [o for o in on_waba if verdict.allows(o)]
            return next(iter(allowed or on_waba), None)
        return None

    # --- the sink ------------------------------------------------------------------

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        result = WriteResult()
        if self.fail_next:
            reason = self.fail_next.pop(0)
            result.transient = True
            result.failed = {r.id: reason for r in batch}
            return result
        self.batches.append([r.id for r in batch])
        for r in batch:
            for ev in r.events:
                routed, fresh = self.apply(ev, r.id, r.received_at, r.verdict)
                if routed:
                    result.applied += 1
                else:
                    result.quarantined += 1
                result.duplicates += 0 if fresh else 1
            for p in r.problems:
                self.add_problem(p, r.id, r.received_at)
                result.quarantined += 1
        return result

    def add_problem(self, p: Problem, source: str | None, received: float | None) -> None:
        key = rows.problem_key(p)
        self._quarantine(key, {"kind": "problem", "reason": rows.clean_text(p.reason),
                               "field": rows.clean_text(p.field),
                               "waba_id": rows.clean_text(p.waba_id),
                               "phone_number_id": rows.clean_text(p.phone_number_id),
                               "path": rows.clean_text(p.path), "raw": p.raw,
                               "verdict": None},
                         source, received)  # fmt: skip

    def _quarantine(self, key: bytes, row: Row, source: str | None, received: float | None) -> None:
        old = self.quarantine.get(key)
        if old is None:
            self.quarantine[key] = {**row, "dedup_key": key, "source_message_id": source,
                                    "received_at": received, "resolved": False,
                                    "event": None}  # fmt: skip
            return
        old["source_message_id"] = _least(old["source_message_id"], source)
        old["received_at"] = _least(old["received_at"], received)
        old["path"] = _least(old["path"], row["path"])

    def apply(
        self, ev: Event, source: str | None, received: float | None, verdict: Verdict = ANY
    ) -> tuple[bool, bool]:
        """Apply one event: (routed to an organization, new audit row)."""
        org = self.route(ev.phone_number_id, ev.waba_id, verdict)
        dkey = rows.dedup_key(ev)
        ckey = rows.content_key(ev.raw)
        if is_test_traffic(ev.phone_number_id, ev.waba_id):
            key = rows.verdict_key("test", dkey, ckey, "")
            self._hold("test", rows.TEST_TRAFFIC, ev, key, None, source, received)
            return False, True
        if not verdict.any and (org is None or not verdict.allows(org)):
            self._refuse(ev, org, dkey, ckey, source, received, verdict)
            return False, True
        if rows.unholdable(ev.raw):  # PostgresSink finds these by bisection
            self.add_problem(_refused(ev), source, received)
            return False, True
        payload, raw = rows.jsonb_text(ev.raw)
        if isinstance(ev, StatusEvent):
            wamid, status, at = ev.status.id, ev.status.status, ev.timestamp
        elif isinstance(ev, MessageEvent):
            wamid, status, at = ev.message.id, None, ev.timestamp
        else:
            wamid, status, at = None, None, ev.entry_time
        fresh = dkey not in self.events
        new = {"organization_id": org, "field": rows.clean_text(ev.field),
               "event_kind": ev.kind, "event_type": rows.clean_text(ev.type),
               "whatsapp_message_id": rows.clean_text(wamid),
               "message_status": rows.clean_text(status), "waba_id": rows.clean_text(ev.waba_id),
               "phone_number_id": rows.clean_text(ev.phone_number_id), "event_at": at,
               "payload": json.loads(payload), "payload_raw": raw, "content_key": ckey,
               "dedup_key": dkey, "source_message_id": source, "received_at": received}  # fmt: skip
        old = self.events.get(dkey)
        if old is None:
            self.events[dkey] = new
        else:
            if old["organization_id"] is None:
                old["organization_id"] = org
            if ckey < old["content_key"]:
                for k in ("event_type", "event_at", "payload", "payload_raw", "content_key"):
                    old[k] = new[k]
            old["source_message_id"] = _least(old["source_message_id"], source)
            old["received_at"] = _least(old["received_at"], received)
        if org is None:
            _, reason = rows.held_back(None, ANY, ev.phone_number_id, ev.waba_id)
            qkey = rows.tenant_key(dkey, ckey)
            self._hold("tenant", reason, ev, qkey, ANY.encode(), source, received)
            return False, fresh
        if isinstance(ev, StatusEvent):
            self._status(org, ev, ckey)
        elif isinstance(ev, MessageEvent):
            self._message(org, ev, ckey, payload, raw)
        return True, fresh

    def _refuse(
        self,
        ev: Event,
        org: int | None,
        dkey: bytes,
        ckey: bytes,
        source: str | None,
        received: float | None,
        verdict: Verdict,
    ) -> None:
        """An event its verdict keeps out of ``org``: quarantined, nothing else written."""
        kind, reason = rows.held_back(org, verdict, ev.phone_number_id, ev.waba_id)
        key = rows.verdict_key(kind, dkey, ckey, verdict.encode())
        self._hold(kind, reason, ev, key, verdict.encode(), source, received)

    def _hold(
        self,
        kind: str,
        reason: str,
        ev: Event,
        key: bytes,
        verdict: str | None,
        source: str | None,
        received: float | None,
    ) -> None:
        """Quarantine ``ev`` whole, with what replay needs to apply it later."""
        self._quarantine(key, {"kind": kind, "reason": reason,
                               "field": rows.clean_text(ev.field),
                               "waba_id": rows.clean_text(ev.waba_id),
                               "phone_number_id": rows.clean_text(ev.phone_number_id),
                               "path": rows.clean_text(ev.path), "raw": ev.raw,
                               "verdict": verdict},
                         source, received)  # fmt: skip
        self.quarantine[key]["event"] = ev

    def _message_row(self, org: int, wamid: str) -> Row:
        row = self.messages.get((org, wamid))
        if row is None:
            row = self.messages[(org, wamid)] = {
                "organization_id": org, "whatsapp_message_id": wamid, "direction": "outbound",
                "campaign_id": None, "phone_number": None, "user_id": None,
                "message_type": None, "content": None, "template_name": None,
                "message_status": None, "status_rank": 0, "status_key": None,
                **{f"{s}_at": None for s in rows.TIMED_STATUSES},
                "error_code": None, "error_title": None, "error_message": None,
                "errors": None, "pricing": None, "pricing_key": None,
                "conversation_id": None, "conversation": None, "conversation_key": None,
                "biz_opaque_callback_data": None, "message_at": None, "content_key": None,
            }  # fmt: skip
        return row

    def _status(self, org: int, ev: StatusEvent, ckey: bytes) -> None:
        s = ev.status
        row = self._message_row(org, rows.clean_text(s.id) or "")
        name = rows.clean_text(s.status) or ""
        skey = rows.status_key(name, ev.timestamp, ckey)
        facts = rows.status_facts(s)
        # Recipient and user id count while no incoming message of the wamid is stored
        # (then its sender's win); "" is absent (README, Storing).
        if row["content_key"] is None:
            row["phone_number"] = _least(
                row["phone_number"], rows.clean_text(s.recipient_id) or None
            )
            row["user_id"] = _least(row["user_id"], rows.clean_text(s.recipient_user_id) or None)
        row["biz_opaque_callback_data"] = _least(
            row["biz_opaque_callback_data"], rows.clean_text(s.biz_opaque_callback_data) or None
        )
        if row["status_key"] is None or skey > row["status_key"]:
            row.update(message_status=name, status_rank=rows.status_rank(name),
                       status_key=skey, error_code=facts["error_code"],
                       error_title=facts["error_title"], error_message=facts["error_message"],
                       errors=_json(facts["errors"]))  # fmt: skip
        if name in rows.STATUS_RANK and ev.timestamp is not None:
            row[f"{name}_at"] = _least(row[f"{name}_at"], ev.timestamp)
        if facts["pricing"] is not None and (
            row["pricing_key"] is None or skey > row["pricing_key"]
        ):
            row.update(pricing=_json(facts["pricing"]), pricing_key=skey)
        if facts["conversation"] is not None and (
            row["conversation_key"] is None or skey > row["conversation_key"]
        ):
            row.update(conversation_id=facts["conversation_id"], conversation_key=skey,
                       conversation=_json(facts["conversation"]))  # fmt: skip

    def _message(
        self, org: int, ev: MessageEvent, ckey: bytes, payload: str, raw: bytes | None
    ) -> None:
        wamid = rows.clean_text(ev.message.id) or ""
        f = rows.incoming_facts(ev)
        row = self._message_row(org, wamid)
        if row["content_key"] is None or ckey < row["content_key"]:
            row.update(direction="inbound", phone_number=f["from_phone_number"] or None,
                       user_id=f["from_user_id"] or None, message_type=f["message_type"],
                       content=f["content"], message_at=f["sent_at"], content_key=ckey)  # fmt: skip
        old = self.incoming.get((org, wamid))
        if old is None or ckey < old["content_key"]:
            jsonish = ("interactive_data", "location", "contacts", "order_data", "referral")
            self.incoming[(org, wamid)] = {
                **{k: (_json(v) if k in jsonish else v) for k, v in f.items()},
                "organization_id": org, "whatsapp_message_id": wamid,
                "payload": json.loads(payload), "payload_raw": raw, "content_key": ckey,
            }  # fmt: skip

    # --- senders and replay --------------------------------------------------------

    async def record_outbound(self, outbound: Any) -> None:
        """Like ``wahook.sinks.postgres.record_outbound`` (takes its ``Outbound``)."""
        items = outbound if isinstance(outbound, list | tuple) else [outbound]
        for o in items:
            row = self._message_row(o.organization_id, o.wamid)
            row["campaign_id"] = row["campaign_id"] or o.campaign_id
            if row["content_key"] is None:  # as for statuses
                row["phone_number"] = _least(row["phone_number"], o.recipient or None)
            for k, v in (("message_type", o.message_type), ("content", o.content),
                         ("template_name", o.template_name)):  # fmt: skip
                if row[k] is None:
                    row[k] = v
            if o.audience_id is not None:
                if self.audience.get(o.audience_id, {}).get("organization_id") == o.organization_id:
                    self.audience[o.audience_id]["whatsapp_message_id"] = o.wamid
            elif o.campaign_id is not None:
                for a in self.audience.values():
                    if a["campaign_id"] == o.campaign_id and a["phone_number"] == o.recipient:
                        a["whatsapp_message_id"] = o.wamid
                        break
                else:
                    aid = self.add_audience(o.campaign_id, o.recipient)
                    self.audience[aid]["whatsapp_message_id"] = o.wamid

    async def replay_quarantine(self, unverified: Verdict | None = None) -> int:
        """Apply quarantined events whose organization now exists and is allowed by their
        verdict (``unverified``: the operator's verdict for events that had none); return
        how many."""
        done = 0
        for q in list(self.quarantine.values()):
            ev = q["event"]
            if q["resolved"] or ev is None or q["kind"] not in ("tenant", "unverified"):
                continue
            verdict = Verdict.decode(q["verdict"])
            if verdict is None or verdict.unverified:
                verdict = unverified
            if verdict is None:
                continue
            org = self.route(ev.phone_number_id, ev.waba_id, verdict)
            if org is None or not verdict.allows(org):
                continue
            self.apply(ev, q["source_message_id"], q["received_at"], verdict)
            q["resolved"] = True
            done += 1
        return done

    # --- the state, as wahook.testing.dump_tables reads it from PostgreSQL ---------

    def dump(self) -> dict[str, list[Row]]:
        def campaign_of(org: int, wamid: str | None) -> int | None:
            m = self.messages.get((org, wamid or ""))
            if m is None or m["direction"] != "outbound":
                return None
            cid: int | None = m["campaign_id"]
            return cid

        incoming = []
        for row in self.incoming.values():
            r = dict(row)
            r["context_campaign_id"] = campaign_of(r["organization_id"], r["context_message_id"])
            incoming.append(r)
        replies_to: dict[tuple[int, str | None], list[Row]] = {}
        for i in self.incoming.values():
            if i["context_message_id"] is not None:
                replies_to.setdefault((i["organization_id"], i["context_message_id"]), []).append(i)
        audience = []
        for a in self.audience.values():
            r = dict(a)
            m = self.messages.get((a["organization_id"], a["whatsapp_message_id"] or ""))
            take = m if a["whatsapp_message_id"] is not None and m is not None else {}
            r["message_status"] = take.get("message_status") or "pending"
            for s in rows.TIMED_STATUSES:
                r[f"{s}_at"] = take.get(f"{s}_at")
            r["error_code"] = take.get("error_code")
            r["error_message"] = take.get("error_message")
            replies = sorted(
                (i["sent_at"] is None, i["sent_at"] or 0, i["whatsapp_message_id"], i["sent_at"])
                for i in replies_to.get((a["organization_id"], a["whatsapp_message_id"]), ())
            )
            r["replied_at"] = replies[0][3] if replies else None
            r["reply_message_id"] = replies[0][2] if replies else None
            audience.append(r)
        quarantine = [
            {k: v for k, v in q.items() if k != "event"} for q in self.quarantine.values()
        ]
        return {
            "messages": _sorted(self.messages.values()),
            "incoming_messages": _sorted(incoming),
            "campaign_audience": _sorted(audience),
            "webhook_events": _sorted(self.events.values()),
            "quarantine": _sorted(quarantine),
        }


def dump_order(row: Row) -> str:
    """Where a row goes in a dump (here and in ``wahook.testing.dump_tables``): its columns
    by name, and JSON values with their keys sorted, so two equal rows sort alike however
    their dicts were built (PostgreSQL's jsonb and Python order keys differently)."""
    return json.dumps(row, sort_keys=True, default=repr)


def _sorted(table: Any) -> list[Row]:
    return sorted((dict(r) for r in table), key=dump_order)
