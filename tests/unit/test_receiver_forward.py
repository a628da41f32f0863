"""Splitting oversize bodies and planning SQS batches, against an in-memory SQS."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from typing import Any

import msgspec
import pytest

from wahook.parse import decode
from wahook.receiver import samples
from wahook.receiver.core import Accepted
from wahook.receiver.doubles import AsyncMemorySqs, MemorySqs
from wahook.receiver.envelope import Unsplittable, split, summarize
from wahook.receiver.forward import (
    ATTRIBUTE_RESERVE,
    MAX_ATTRIBUTES,
    MAX_BATCH_ENTRIES,
    AsyncForwarder,
    ForwardError,
    Planner,
    SyncForwarder,
)
from wahook.verdict import ANY, Verdict

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/wahook"
LIMIT = 256 * 1024


def events_of(*bodies: bytes) -> list[Any]:
    """Every event of the bodies, in order, without the JSON path (a split moves items)."""
    return [msgspec.structs.replace(ev, path="") for b in bodies for ev in decode(b).events()]


@functools.cache
def big_body(target: int = 3 * 1024 * 1024) -> bytes:
    """Several entries and changes, one of them alone larger than a queue message."""
    entries: list[tuple[str, list[dict[str, Any]]]] = []
    n = size = 0
    while size < target - 600_000:
        changes = []
        for c in range(3):
            msgs = [samples.text_message(n + i, sender=f"1650555{c:04d}") for i in range(40)]
            sts = [samples.status(n + i) for i in range(40)]
            phone = f"10654035224{len(entries):04d}"
            changes.append(samples.change(msgs, sts, phone_number_id=phone))
            n += 40
        entries.append((f"1022901293{len(entries):05d}", changes))
        size += len(samples.notification(entries[-1]))
    huge = [samples.text_message(n + i) for i in range(2500)]  # ~500 KB in one change
    entries.append(("102290129399999", [samples.change(huge, [samples.status(n)])]))
    return samples.notification(*entries)


def accepted(body: bytes, verdict: Verdict = ANY) -> Accepted:
    return Accepted(body, summarize(body), 1764075600.25, verdict)


def counts(attrs: dict[str, str]) -> dict[str, int]:
    """The ``counts`` attribute (``changes=N,messages=N,statuses=N``) as a dict."""
    return {k: int(v) for k, v in (p.split("=") for p in attrs["counts"].split(","))}


def test_split_keeps_every_event_exactly_once() -> None:
    body = big_body()
    assert len(body) > 3 * 1024 * 1024 - 100_000
    parts = split(body, LIMIT)
    assert len(parts) > 12
    assert all(len(p) <= LIMIT for p in parts)
    for part in parts:
        assert not decode(part).problems
    assert events_of(*parts) == events_of(body)


def test_split_of_a_small_body_is_the_body() -> None:
    body = samples.sample()
    assert split(body, LIMIT) == [body]


def test_a_split_change_keeps_its_metadata_and_contacts() -> None:
    msgs = [samples.text_message(i, sender=f"1555000{i % 3}") for i in range(300)]
    body = samples.notification((samples.WABA_ID, [samples.change(msgs)]))
    parts = split(body, 20_000)
    assert len(parts) > 3
    for ev in events_of(*parts):
        assert ev.phone_number_id == samples.PHONE_NUMBER_ID
        assert ev.contact is not None
        assert ev.contact.wa_id == ev.message.from_
    assert events_of(*parts) == events_of(body)


def test_unsplittable_bodies() -> None:
    with pytest.raises(Unsplittable):
        split(b"x" * 5000, 1000)
    template = {"event": "APPROVED", "message_template_id": 1, "reason": "x" * 5000}
    body = samples.notification(
        ("1", [{"field": "message_template_status_update", "value": template}])
    )
    with pytest.raises(Unsplittable):
        split(body, 2000)
    one_big_item = samples.notification(
        ("1", [samples.change([samples.text_message(0, text="y" * 5000)])])
    )
    with pytest.raises(Unsplittable):
        split(one_big_item, 3000)


def test_attributes_describe_the_body() -> None:
    body = samples.sample(messages=2, statuses=3)
    [entry] = Planner(QUEUE).entries(accepted(body))
    attrs = {k: v["StringValue"] for k, v in entry.params["MessageAttributes"].items()}
    assert attrs == {
        "body_sha256": summarize(body).sha256,
        "received_at": "2025-11-25T13:00:00.250Z",
        "waba_id": samples.WABA_ID,
        "phone_number_id": samples.PHONE_NUMBER_ID,
        "field": "messages",
        "counts": "changes=1,messages=2,statuses=3",
        "verdict": "any",
    }
    assert entry.params["MessageBody"].encode() == body
    assert "MessageGroupId" not in entry.params


BIG_VERDICT = Verdict.of(range(1, 3001))  # one Meta app's secret shared by 3,000 tenants


@pytest.mark.parametrize("verdict", [ANY, Verdict.of({7}), BIG_VERDICT])
@pytest.mark.parametrize(
    "body",
    [
        samples.sample(messages=2, statuses=3),
        b"\x00not json\xff",  # a problem, base64-encoded
        b'{"object":"page","x":"\x01"}',  # a problem SQS cannot carry as text
    ],
    ids=["notification", "binary-problem", "control-char-problem"],
)
def test_at_most_ten_attributes_and_the_verdict_whole(body: bytes, verdict: Verdict) -> None:
    """SQS takes 10 message attributes (moto does not enforce it): every part of every
    kind of body stays within it, and the verdict arrives whole, never cut."""
    for entry in Planner(QUEUE).entries(accepted(body, verdict)):
        attrs = entry.params["MessageAttributes"]
        assert len(attrs) <= MAX_ATTRIBUTES
        assert Verdict.decode(attrs["verdict"]["StringValue"]) == verdict


def test_split_parts_keep_the_verdict_and_the_attribute_limit() -> None:
    body = big_body()
    entries = Planner(QUEUE).entries(accepted(body, BIG_VERDICT))
    assert len(entries) > 12
    for entry in entries:
        attrs = entry.params["MessageAttributes"]
        assert {"part", "verdict", "counts"} <= set(attrs)
        assert len(attrs) <= MAX_ATTRIBUTES
        assert Verdict.decode(attrs["verdict"]["StringValue"]) == BIG_VERDICT
        assert entry.size <= LIMIT


def test_fifo_queues_get_group_and_deduplication_ids() -> None:
    body = samples.sample()
    [entry] = Planner(QUEUE + ".fifo").entries(accepted(body))
    assert entry.params["MessageGroupId"] == samples.PHONE_NUMBER_ID
    assert entry.params["MessageDeduplicationId"] == summarize(body).sha256


def test_non_notification_and_non_utf8_bodies() -> None:
    [entry] = Planner(QUEUE).entries(accepted(b'{"hello":"world"}'))
    attrs = entry.params["MessageAttributes"]
    assert attrs["problem"]["StringValue"].startswith("not a WhatsApp notification")
    assert "content_encoding" not in attrs
    raw = b"\xff\xfe not utf-8 \x00"
    [entry] = Planner(QUEUE).entries(accepted(raw))
    assert entry.params["MessageAttributes"]["content_encoding"]["StringValue"] == "base64"
    assert base64.b64decode(entry.params["MessageBody"]) == raw
    # Valid UTF-8, but characters SQS refuses (ASCII and not).
    for refused in (b'{"a":"\x01"}', '{"a":"😀\x02"}'.encode(), '{"a":"\ufffe"}'.encode()):
        [entry] = Planner(QUEUE).entries(accepted(refused))
        assert entry.params["MessageAttributes"]["content_encoding"]["StringValue"] == "base64"
        assert base64.b64decode(entry.params["MessageBody"]) == refused
    # Literal emoji and tabs are fine as text.
    fine = '{"a":"Olá 😀\t\ud7ff\ue000\U0010ffff"}'.encode()
    [entry] = Planner(QUEUE).entries(accepted(fine))
    assert "content_encoding" not in entry.params["MessageAttributes"]
    assert entry.params["MessageBody"].encode() == fine


def test_oversize_non_notification_cannot_be_queued() -> None:
    with pytest.raises(ForwardError):
        Planner(QUEUE).entries(accepted(b"[" + b"1," * 200_000 + b"1]"))


def test_parts_carry_their_own_counts_and_the_original_digest() -> None:
    body = big_body()
    planner = Planner(QUEUE)
    entries = planner.entries(accepted(body))
    total = summarize(body)
    attrs = [{k: v["StringValue"] for k, v in e.params["MessageAttributes"].items()}
             for e in entries]  # fmt: skip
    assert {a["body_sha256"] for a in attrs} == {total.sha256}
    assert [a["part"] for a in attrs] == [f"{i + 1}/{len(entries)}" for i in range(len(entries))]
    assert sum(counts(a)["messages"] for a in attrs) == total.messages
    assert sum(counts(a)["statuses"] for a in attrs) == total.statuses
    assert all(e.size <= LIMIT for e in entries)


def test_batches_respect_count_and_size() -> None:
    planner = Planner(QUEUE, max_message_bytes=64 * 1024)
    bodies = [samples.sized(n) for n in (100, 30_000, 30_000, 30_000, 500, 40_000)]
    entries = [e for b in bodies for e in planner.entries(accepted(b))]
    entries += entries[:1] * 12
    batches = list(planner.batches(entries))
    assert [e for b in batches for e in b] == entries
    for batch in batches:
        assert len(batch) <= MAX_BATCH_ENTRIES
        assert sum(e.size for e in batch) <= 64 * 1024


def test_sync_forwarder_sends_every_part_in_order() -> None:
    body = big_body()
    sqs = MemorySqs()
    parts = SyncForwarder(sqs, Planner(QUEUE)).send(accepted(body))
    assert parts == len(sqs.sent) > 12
    assert events_of(*(m["MessageBody"].encode() for m in sqs.sent)) == events_of(body)


def test_failed_entries_are_retried() -> None:
    seen: dict[str, int] = {}

    def flaky(entry: dict[str, Any]) -> dict[str, Any] | None:
        seen[entry["Id"]] = seen.get(entry["Id"], 0) + 1
        if seen[entry["Id"]] == 1:
            return {"Code": "InternalError", "Message": "try again", "SenderFault": False}
        return None

    sqs = MemorySqs(fail=flaky)
    body = samples.sample()
    assert SyncForwarder(sqs, Planner(QUEUE)).send(accepted(body)) == 1
    assert (sqs.calls, len(sqs.sent)) == (2, 1)


def _failing(code: str, sender_fault: bool) -> MemorySqs:
    return MemorySqs(fail=lambda e: {"Code": code, "Message": "x", "SenderFault": sender_fault})


@pytest.mark.parametrize(
    ("sqs", "calls"),
    [
        (_failing("InternalError", False), 3),
        (_failing("InvalidParameterValue", True), 1),
        (MemorySqs(error=ConnectionError("refused")), 1),
    ],
)
def test_refusals_raise_forward_error(sqs: MemorySqs, calls: int) -> None:
    with pytest.raises(ForwardError):
        SyncForwarder(sqs, Planner(QUEUE)).send(accepted(samples.sample()))
    assert sqs.calls == calls
    assert not sqs.sent


async def test_async_forwarder_sends_batches_together() -> None:
    body = big_body()
    sqs = AsyncMemorySqs()
    parts = await AsyncForwarder(sqs, Planner(QUEUE)).send(accepted(body))
    assert parts == len(sqs.sent)

    # Batches go out concurrently: put the parts back in order, then compare the events.
    def part(m: dict[str, Any]) -> int:
        return int(m["MessageAttributes"]["part"]["StringValue"].split("/")[0])

    bodies = sorted(sqs.sent, key=part)
    assert events_of(*(m["MessageBody"].encode() for m in bodies)) == events_of(body)


async def test_async_forwarder_raises_forward_error_when_one_batch_fails() -> None:
    sqs = AsyncMemorySqs(fail=lambda e: {"Code": "X", "Message": "no", "SenderFault": True}
                         if e["Id"] == "p3" else None)  # fmt: skip
    with pytest.raises(ForwardError):
        await AsyncForwarder(sqs, Planner(QUEUE)).send(accepted(big_body()))
    await asyncio.sleep(0)


def test_planner_rejects_tiny_limits() -> None:
    with pytest.raises(ValueError, match="too small"):
        Planner(QUEUE, max_message_bytes=ATTRIBUTE_RESERVE)


def test_summary_of_several_entries() -> None:
    body = samples.notification(
        ("1", [samples.change([samples.text_message(0)], phone_number_id="p1")]),
        ("2", [samples.change([], [samples.status(1)], phone_number_id="p2"),
               {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}]),
    )  # fmt: skip
    s = summarize(body)
    assert (s.waba_ids, s.phone_number_ids) == (("1", "2"), ("p1", "p2"))
    assert s.fields == ("messages", "account_update")
    assert (s.entries, s.changes, s.messages, s.statuses) == (2, 3, 1, 1)
    assert json.loads(body)["entry"][1]["changes"][1]["field"] == "account_update"


def test_a_large_history_change_splits_between_history_items() -> None:
    def item(i: int) -> dict[str, Any]:
        msgs = [samples.text_message(i * 100 + k) for k in range(8)]
        for m in msgs:
            m["history_context"] = {"status": "READ"}
        return {"metadata": {"phase": 0, "chunk_order": i, "progress": i},
                "threads": [{"id": samples.SENDER, "messages": msgs}]}  # fmt: skip

    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "1", "phone_number_id": samples.PHONE_NUMBER_ID},
        "history": [item(i) for i in range(60)],
    }
    body = samples.notification((samples.WABA_ID, [{"field": "history", "value": value}]))
    parts = split(body, 20_000)
    assert len(parts) > 5
    assert all(len(p) <= 20_000 for p in parts)
    assert len(events_of(body)) == 60
    assert events_of(*parts) == events_of(body)
