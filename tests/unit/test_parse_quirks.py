"""The quirk rules of decode.py's docstring: timestamps, big integers, duplicate keys, BOM,
U+0000 and lone surrogates, empty ``from``."""

from __future__ import annotations

import json
import math

import pytest

from tests.fixtures import load
from wahook.parse import ChangeEvent, MessageEvent, StatusEvent, decode, to_epoch
from wahook.parse.models import TemplateStatusUpdate


def body_with(messages: str = "", statuses: str = "", contacts: str = "") -> bytes:
    arrays = [
        f'"{k}":[{v}]'
        for k, v in (("contacts", contacts), ("messages", messages), ("statuses", statuses))
        if v
    ]
    value = (
        '{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1555",'
        '"phone_number_id":"42"},' + ",".join(arrays) + "}"
    )
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":"7","changes":[{"field":"messages",'
        f'"value":{value}}}]}}]}}'
    ).encode()


def text_message(wamid: str, body_json: str, sender: str = "1650") -> str:
    return (
        f'{{"from":"{sender}","id":"{wamid}","timestamp":"1749416383","type":"text",'
        f'"text":{{"body":{body_json}}}}}'
    )


def only_message(body: bytes) -> MessageEvent:
    n = decode(body)
    assert n.problems == []
    (ev,) = n.events()
    assert isinstance(ev, MessageEvent)
    return ev


# --- timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1749416383", 1749416383),
        (1749416383, 1749416383),
        (1749416383.75, 1749416383),
        (" 1749416383 ", 1749416383),
        ("+1749416383", 1749416383),
        ("1749416383123", 1749416383),  # 13 digits: milliseconds
        (1749416383123, 1749416383),
        (0, 0),
        ("0", 0),
        ("April 17, 2025", None),
        ("2025-04-17T10:00:00Z", None),
        ("", None),
        ("   ", None),
        ("-5", None),
        (-5, None),
        (True, None),
        (False, None),
        (None, None),
        (math.nan, None),
        (math.inf, None),
        ("１７４９４１６３８３", None),  # full-width digits are digits to str.isdigit
        ("1" * 21, None),
        (10**30, None),  # beyond year 9999 even as milliseconds
        ([1749416383], None),
        ({"seconds": 1}, None),
    ],
)
def test_to_epoch(value: object, seconds: int | None) -> None:
    assert to_epoch(value) == seconds


def test_garbage_timestamp_keeps_the_item_with_no_time() -> None:
    raw = '{"id":"wamid.A","status":"read","timestamp":"yesterday","recipient_id":"1"}'
    n = decode(body_with(statuses=raw))
    assert n.problems == []
    (ev,) = n.events()
    assert isinstance(ev, StatusEvent)
    assert ev.status.timestamp == "yesterday"
    assert ev.timestamp is None
    assert ev.raw == raw.encode()


def test_millisecond_timestamp_on_a_message() -> None:
    msg = text_message("wamid.A", '"x"').replace('"1749416383"', "1749416383999")
    ev = only_message(body_with(messages=msg))
    assert ev.message.timestamp == 1749416383999
    assert ev.timestamp == 1749416383


def test_entry_time_is_read_with_the_same_rule() -> None:
    body = load("field_template_category").replace(b'"time": 1749502000', b'"time": "1749502000"')
    body = body.replace(b'"time": 1749502100', b'"time": "whenever"')
    done, impending = decode(body).events()
    assert isinstance(done, ChangeEvent)
    assert isinstance(impending, ChangeEvent)
    assert (done.entry_time, impending.entry_time) == (1749502000, None)


# --- integers beyond 64 bits ---------------------------------------------------------


def test_integers_beyond_64_bits_are_lossless() -> None:
    huge = 123456789012345678901234567890123
    body = load("field_template_status").replace(b"1689556908129832", str(huge).encode())
    first = next(decode(body).events())
    assert isinstance(first, ChangeEvent)
    assert isinstance(first.value, TemplateStatusUpdate)
    assert first.value.message_template_id == huge
    assert str(huge).encode() in first.raw
    assert json.loads(first.raw)["message_template_id"] == huge


def test_numeric_waba_id_and_huge_prices() -> None:
    body = load("msg_order").replace(b'"id": "102290129340398"', b'"id": 102290129340398000000001')
    body = body.replace(b'"quantity": 2', b'"quantity": 18446744073709551617')
    ev = only_message(body)
    assert ev.waba_id == "102290129340398000000001"
    assert ev.message.order is not None
    assert ev.message.order.product_items[0].quantity == 2**64 + 1


# --- duplicate keys, BOM -------------------------------------------------------------


def test_duplicate_keys_last_one_wins_and_raw_keeps_both() -> None:
    msg = text_message("wamid.A", '"first"')[:-1] + ',"text":{"body":"second"}}'
    ev = only_message(body_with(messages=msg))
    assert ev.message.text is not None
    assert ev.message.text.body == "second"
    assert b'"first"' in ev.raw
    assert b'"second"' in ev.raw


def test_duplicate_field_in_a_change() -> None:
    body = load("msg_button").replace(b'"field": "messages"', b'"field": "x", "field": "messages"')
    (ev,) = decode(body).events()
    assert ev.field == "messages"
    assert ev.known


def test_utf8_bom_is_skipped() -> None:
    plain = decode(load("msg_text_literal_unicode"))
    bom = decode(b"\xef\xbb\xbf" + load("msg_text_literal_unicode"))
    assert list(bom.events()) == list(plain.events())
    assert bom.problems == []


def test_str_bodies_decode_like_bytes() -> None:
    text = load("msg_text_literal_unicode").decode()
    assert list(decode(text).events()) == list(decode(load("msg_text_literal_unicode")).events())
    assert list(decode(bytearray(load("msg_text"))).events()) == list(
        decode(memoryview(load("msg_text"))).events()
    )


# --- U+0000 and lone surrogates ------------------------------------------------------


def test_nul_character_survives_into_text_and_raw() -> None:
    ev = only_message(body_with(messages=text_message("wamid.A", r'"a\u0000b"')))
    assert ev.message.text is not None
    assert ev.message.text.body == "a\x00b"
    assert b"\\u0000" in ev.raw
    assert json.loads(ev.raw)["text"]["body"] == "a\x00b"


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (r'"\ud800"', "\ud800"),
        (r'"x\udfffy"', "x\udfffy"),
        (r'"\ude00\ud83d"', "\ude00\ud83d"),  # a pair in the wrong order is two lone halves
        (r'"\ud83d\ude00 ok, then \ud83d"', "😀 ok, then \ud83d"),
    ],
)
def test_lone_surrogates_survive_into_text_and_raw(escaped: str, text: str) -> None:
    body = body_with(
        contacts='{"profile":{"name":"Ann"},"wa_id":"1650"}',
        messages=",".join(
            [
                text_message("wamid.BEFORE", '"fine"'),
                text_message("wamid.LONE", escaped),
                text_message("wamid.AFTER", r'"Caf\u00e9"'),
            ]
        ),
    )
    n = decode(body)
    assert n.problems == []
    before, lone, after = n.events()
    assert isinstance(lone, MessageEvent)
    assert lone.message.text is not None
    assert lone.message.text.body == text
    assert lone.raw.isascii()
    assert json.loads(lone.raw)["text"]["body"] == text
    assert (lone.path, lone.phone_number_id) == ("entry[0].changes[0].value.messages[1]", "42")
    assert lone.contact is not None
    assert lone.contact.name == "Ann"
    assert isinstance(after, MessageEvent)
    assert after.message.text is not None
    assert after.message.text.body == "Café"
    assert [ev.wamid for ev in (before, lone, after)] == [
        "wamid.BEFORE",
        "wamid.LONE",
        "wamid.AFTER",
    ]


def test_lone_surrogate_body_still_sets_bad_items_aside() -> None:
    body = body_with(
        messages=",".join([text_message("wamid.OK", r'"\ud800"'), '{"type":"text"}', "17"])
    )
    n = decode(body)
    (ev,) = n.events()
    assert ev.wamid == "wamid.OK"
    assert [p.path for p in n.problems] == [
        "entry[0].changes[0].value.messages[1]",
        "entry[0].changes[0].value.messages[2]",
    ]
    assert "id" in n.problems[0].reason
    assert [json.loads(p.raw) for p in n.problems] == [{"type": "text"}, 17]


# --- empty from, contacts ------------------------------------------------------------


def test_empty_from_with_user_ids_is_kept_empty() -> None:
    msg = text_message("wamid.A", '"hi"', sender="")[:-1] + ',"from_user_id":"US.1"}'
    contact = '{"profile":{"name":"Lia"},"wa_id":"","user_id":"US.1"}'
    ev = only_message(body_with(messages=msg, contacts=contact))
    assert (ev.message.from_, ev.message.from_user_id, ev.message.sender) == ("", "US.1", "US.1")
    assert ev.contact is not None
    assert ev.contact.name == "Lia"


def test_plus_prefixed_from_is_kept_as_sent() -> None:
    ev = only_message(body_with(messages=text_message("wamid.A", '"x"', sender="+16505551234")))
    assert ev.message.from_ == "+16505551234"


def test_contacts_are_matched_on_ids_not_positions() -> None:
    contacts = '{"profile":{"name":"Ann"},"wa_id":"1"},{"profile":{"name":"Bob"},"wa_id":"2"}'
    messages = ",".join(
        [
            text_message("wamid.FROM2", '"x"', sender="2"),
            text_message("wamid.FROM1", '"y"', sender="1"),
            text_message("wamid.FROM3", '"z"', sender="3"),
        ]
    )
    n = decode(body_with(messages=messages, contacts=contacts))
    names = [ev.contact.name if ev.contact else None for ev in n.events() if ev.kind == "message"]
    assert names == ["Bob", "Ann", None]


def test_lone_contact_without_wa_id_matches() -> None:
    ev = only_message(
        body_with(messages=text_message("wamid.A", '"x"'), contacts='{"profile":{"name":"Zoe"}}')
    )
    assert ev.contact is not None
    assert ev.contact.name == "Zoe"


@pytest.mark.parametrize(
    ("contact", "sender", "user_id", "matched"),
    [
        ('{"wa_id":"1"}', "1", None, True),
        ('{"wa_id":"1"}', "2", None, False),  # someone else
        ('{"wa_id":"1","user_id":"U"}', "2", "U", True),  # the user id still matches
        ('{"wa_id":"","user_id":"U"}', "2", None, True),  # nothing to compare: the lone one
        ('{"user_id":"U"}', "", "V", False),
        ('{"user_id":"U"}', "", None, True),
    ],
)
def test_lone_contact_matching(
    contact: str, sender: str, user_id: str | None, matched: bool
) -> None:
    msg = text_message("wamid.A", '"x"', sender=sender)
    if user_id:
        msg = msg[:-1] + f',"from_user_id":"{user_id}"}}'
    ev = only_message(body_with(messages=msg, contacts=contact))
    assert (ev.contact is not None) is matched
