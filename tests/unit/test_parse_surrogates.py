"""Lone surrogate escapes anywhere in a body (issue 11, defects 2 and 3), entries without an
id (defect 11), and ``decode_item`` for stored items."""

from __future__ import annotations

import json
import sys

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures import load
from wahook.parse import (
    ChangeEvent,
    DecodeError,
    MessageEvent,
    StatusEvent,
    decode,
    decode_item,
)
from wahook.parse.decode import UNEXPECTED
from wahook.parse.models import Contact, Message, Status, TemplateStatusUpdate
from wahook.parse.surrogates import StandIns

META = '"metadata":{"display_phone_number":"1555","phone_number_id":"42"}'


def body(value: str, entry: str = '"id":"7",', field: str = "messages") -> bytes:
    return (
        '{"object":"whatsapp_business_account","entry":[{' + entry + '"changes":[{"field":"'
        + field + '","value":' + value + "}]}]}"
    ).encode()  # fmt: skip


def status(wamid: str, extra: str = "") -> str:
    return '{"id":"' + wamid + '","status":"sent","timestamp":"1"' + extra + "}"


def statuses(*items: str, meta: str = META) -> str:
    return "{" + meta + ',"statuses":[' + ",".join(items) + "]}"


# --- defect 2: a lone surrogate as a key ------------------------------------------------


@pytest.mark.parametrize("key", [r"\ud800", r"\uDFFF", r"x\udc00y", r"\ude00\ud83d"])
def test_lone_surrogate_key_in_an_item_is_an_unknown_key(key: str) -> None:
    poison = status("wamid.A", f',"{key}":1')
    n = decode(body(statuses(status("wamid.0"), poison, status("wamid.B"))))
    assert n.problems == []
    zero, a, b = n.events()
    assert isinstance(a, StatusEvent)
    assert a.raw == poison.encode()  # exactly as sent, the key's spelling too
    assert a.status == msgspec.json.decode(status("wamid.A"), type=Status)
    clean = list(decode(body(statuses(status("wamid.0"), status("wamid.A"), status("wamid.B"))))
                 .events())  # fmt: skip
    assert [zero, b] == [clean[0], clean[2]]  # the siblings are what they would be alone


def test_lone_surrogate_key_and_value_in_metadata() -> None:
    meta = r'"metadata":{"phone_number_id":"42","\ud800":1,"display_phone_number":"1\udabc"}'
    n = decode(body(statuses(status("wamid.A"), meta=meta)))
    (ev,) = n.events()
    assert isinstance(ev, StatusEvent)
    assert (ev.phone_number_id, ev.display_phone_number) == ("42", "1\udabc")


def test_lone_surrogates_in_ids_field_and_contacts_come_back_as_sent() -> None:
    contact = r'{"profile":{"name":"A\udc00"},"wa_id":"1650"}'
    message = r'{"from":"1650","id":"wamid.\ud801","type":"text","text":{"body":"\uD802"}}'
    value = (
        r'{"metadata":{"phone_number_id":"4\udfff"},"contacts":[' + contact + "],"
        r'"messages":[' + message + "]}"
    )
    n = decode(body(value, entry=r'"id":"7\ud800",', field=r"mess\udbffages"))
    assert n.problems == []
    (ev,) = n.events()
    assert isinstance(ev, MessageEvent)
    assert (ev.waba_id, ev.phone_number_id, ev.field) == ("7\ud800", "4\udfff", "mess\udbffages")
    assert ev.message.id == "wamid.\ud801"
    assert ev.message.text is not None
    assert ev.message.text.body == "\ud802"
    assert ev.contact is not None
    assert ev.contact.name == "A\udc00"
    assert ev.raw == message.encode()


def test_lone_surrogate_in_one_object_value_and_in_envelope_keys() -> None:
    value = r'{"event":"APPROVED","message_template_name":"n\ud800","\udc01":[1]}'
    raw = (
        r'{"object":"whatsapp_business_account","\ud800":0,"entry":[{"id":"7","\udc00":0,'
        r'"changes":[{"field":"message_template_status_update","\udbff":0,"value":' + value
        + "}]}]}"
    ).encode()  # fmt: skip
    (ev,) = decode(raw).events()
    assert isinstance(ev, ChangeEvent)
    assert ev.value == TemplateStatusUpdate(event="APPROVED", message_template_name="n\ud800")
    assert ev.raw == value.encode()


def test_escaped_backslashes_and_pairs_are_not_lone_surrogates() -> None:
    text = r'"\\ud800 \ud83d\ude00 \\\ud800"'  # text "\ud800", an emoji, "\" + lone
    msg = r'{"from":"1","id":"wamid.A","type":"text","text":{"body":' + text + "}}"
    (ev,) = decode(body("{" + META + ',"messages":[' + msg + "]}")).events()
    assert isinstance(ev, MessageEvent)
    assert ev.message.text is not None
    assert ev.message.text.body == "\\ud800 \U0001f600 \\\ud800"
    assert ev.raw == msg.encode()


def test_stand_ins_avoid_code_points_the_body_uses() -> None:
    # The first stand-in candidate (U+E000) is used literally and escaped: no confusion.
    msg = (
        r'{"from":"1","id":"wamid.A","type":"text","text":{"body":"'
        "\ue000" + r'\ue001\uE002 \ud800 \uD800"}}'
    )
    (ev,) = decode(body("{" + META + ',"messages":[' + msg + "]}")).events()
    assert isinstance(ev, MessageEvent)
    assert ev.message.text is not None
    assert ev.message.text.body == "\ue000\ue001\ue002 \ud800 \ud800"
    assert ev.raw == msg.encode()


def test_a_body_using_every_code_point_cannot_hold_stand_ins() -> None:
    every = "".join(
        chr(cp) for cp in range(0x20, 0x10000) if not 0xD800 <= cp < 0xE000 and chr(cp) not in '"\\'
    )
    value = "{" + META + ',"x":"' + every + r'\ud800"}'
    with pytest.raises(DecodeError, match="no code point free"):
        decode(body(value))


@pytest.mark.parametrize(
    "bad",
    [
        r'{"id":"wamid.X","status":"sent","\ud800":NaN}',  # not JSON: the body is refused
        r'{"id":"wamid.X","status":"sent","\ud800":1e999}',
        r'{"id":"wamid.X","status":"sent","\ud800":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_surrogate_bodies_follow_the_rules_of_any_body(bad: str) -> None:
    without = bad.replace(r"\ud800", "k")
    try:
        expected: object = [ev.wamid for ev in decode(body(statuses(without))).events()]
    except DecodeError as exc:
        expected = exc.reason
    try:
        got: object = [ev.wamid for ev in decode(body(statuses(bad))).events()]
    except DecodeError as exc:
        got = exc.reason
    assert got == expected


def test_a_bad_item_with_a_surrogate_is_a_problem_with_its_exact_bytes() -> None:
    bad = r'{"status":"sent","\ud800":1}'  # no id
    n = decode(body(statuses(status("wamid.A"), bad)))
    assert [ev.wamid for ev in n.events()] == ["wamid.A"]
    (p,) = n.problems
    assert (p.path, p.raw) == ("entry[0].changes[0].value.statuses[1]", bad.encode())
    assert "id" in p.reason


_SURROGATE = st.integers(0xD800, 0xDFFF).map(
    lambda cp: rf"\u{cp:04x}" if cp % 2 else rf"\u{cp:04X}"
)


@settings(max_examples=60, deadline=None)
@given(
    where=st.integers(0, 239),
    lone=_SURROGATE,
    as_key=st.booleans(),
)
def test_one_surrogate_leaves_every_other_event_of_a_batch_as_it_was(
    where: int, lone: str, as_key: bool
) -> None:
    batch = load("batch_240")
    clean = list(decode(batch).events())
    raws = [ev.raw for ev in clean]
    target = raws[where]
    extra = (f'"{lone}":1,' if as_key else f'"note":"{lone}",').encode()
    poisoned = target[:1] + extra + target[1:]
    assert batch.count(target) == 1
    n = decode(batch.replace(target, poisoned))
    events = list(n.events())
    assert n.problems == []
    assert events[:where] + events[where + 1 :] == clean[:where] + clean[where + 1 :]
    assert events[where].raw == poisoned


# --- the guard of last resort -------------------------------------------------------


def test_no_other_exception_escapes_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    module = sys.modules["wahook.parse.decode"]  # the package's `decode` is the function

    def broken(*args: object) -> None:
        raise KeyError("a defect")

    monkeypatch.setattr(module._Fanout, "change", broken)
    with pytest.raises(DecodeError) as caught:
        decode(load("msg_text"))
    assert caught.value.reason.startswith(UNEXPECTED)


# --- defect 11: an entry without an id --------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "head"),
    [
        ('"id":null,"time":1749416383,', b'{"id":null,"time":1749416383}'),
        ("", b"{}"),
        ('"id":true,', b'{"id":true}'),
        ('"id":{"a":1},', b'{"id":{"a":1}}'),
    ],
)
def test_entry_without_usable_id_still_gives_its_events(entry: str, head: bytes) -> None:
    msg = '{"from":"1650","id":"wamid.M","timestamp":"1","type":"text","text":{"body":"hi"}}'
    value = "{" + META + ',"messages":[' + msg + "]}"
    n = decode(body(value, entry=entry))
    (ev,) = n.events()
    assert isinstance(ev, MessageEvent)
    assert (ev.waba_id, ev.phone_number_id, ev.wamid) == ("", "42", "wamid.M")
    assert ev.raw == msg.encode()
    (p,) = n.problems
    assert (p.path, p.raw, p.waba_id) == ("entry[0]", head, None)
    assert "without a WABA id" in p.reason
    assert b"wamid.M" not in p.raw  # the message is stored, not lost with the entry


def test_entry_without_id_next_to_a_normal_entry() -> None:
    one = statuses(status("wamid.A"))
    raw = (
        '{"object":"whatsapp_business_account","entry":[{"id":null,"changes":[{"field":'
        '"messages","value":' + one + '}]},{"id":"8","changes":[{"field":"messages","value":'
        + one + "}]}]}"
    ).encode()  # fmt: skip
    n = decode(raw)
    assert [(ev.waba_id, ev.path) for ev in n.events()] == [
        ("", "entry[0].changes[0].value.statuses[0]"),
        ("8", "entry[1].changes[0].value.statuses[0]"),
    ]
    assert [p.path for p in n.problems] == ["entry[0]"]


# --- decode_item ------------------------------------------------------------------------


def test_decode_item_reads_what_decode_stored() -> None:
    for name in ("msg_text", "status_failed", "msg_contacts", "msg_interactive"):
        for ev in decode(load(name)).events():
            if isinstance(ev, MessageEvent):
                assert decode_item(ev.raw, Message) == ev.message
            elif isinstance(ev, StatusEvent):
                assert decode_item(ev.raw, Status) == ev.status


def test_decode_item_keeps_lone_surrogates_in_keys_and_values() -> None:
    raw = rb'{"id":"wamid.\udc00","status":"sent","\ud800":{"\udbff":1}}'
    assert decode_item(raw, Status) == Status(id="wamid.\udc00", status="sent")
    assert decode_item(memoryview(raw), Status).id == "wamid.\udc00"
    contact = rb'{"wa_id":"1","profile":{"name":"\uDEAD"}}'
    assert decode_item(contact, Contact).name == "\udead"
    assert json.loads(raw)["id"] == "wamid.\udc00"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"status":"sent"}', "not a Status"),
        (rb'{"status":"sent","\ud800":1}', "not a Status"),
        (b'{"id":"a","status":"sent"', "invalid JSON"),
        (b"", "empty"),
        (b'{"id":"a","status":"sent","x":' + b"[" * 5000 + b"]" * 5000 + b"}", "nested"),
        (b'{"id":"\xff","status":"sent"}', "UTF-8"),
    ],
)
def test_decode_item_raises_only_decode_error(raw: bytes, says: str) -> None:
    with pytest.raises(DecodeError, match=says):
        decode_item(raw, Status)


def test_stand_ins_leave_a_body_without_lone_surrogates_alone() -> None:
    assert StandIns.of(rb'{"a":"\ud83d\ude00 \\ud800"}') is None
