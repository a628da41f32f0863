"""Every item counts, and a bad item never takes its siblings down (DESIGN.md semantics 1–3)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import all_bodies, load
from wahook.parse import ChangeEvent, MessageEvent, StatusEvent, decode


def wrap(*changes: str, entry_id: str = '"7"') -> bytes:
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":'
        + entry_id
        + ',"changes":['
        + ",".join(changes)
        + "]}]}"
    ).encode()


def change(field: str, value: str) -> str:
    return f'{{"field":"{field}","value":{value}}}'


META = (
    '"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"42"}'
)


def status(wamid: str, status: str = "sent") -> str:
    return f'{{"id":"{wamid}","status":"{status}","timestamp":"1749416383","recipient_id":"1"}}'


def test_batched_post_gives_every_event_in_document_order() -> None:
    n = decode(load("batch_240"))
    evs = list(n.events())
    assert n.problems == []
    assert len(evs) == len(n) == 240
    expected_paths = [
        f"entry[{i}].changes[{j}].value.{'messages' if j == 0 else 'statuses'}[{k}]"
        for i in range(3)
        for j in range(2)
        for k in range(40)
    ]
    assert [ev.path for ev in evs] == expected_paths
    assert len({ev.wamid for ev in evs}) == 240
    for ev in evs:
        i = int(ev.path[6])
        assert ev.waba_id == f"10229012934039{i}"
        assert ev.phone_number_id == f"10654035224292{i}"
    messages = [ev for ev in evs if isinstance(ev, MessageEvent)]
    statuses = [ev for ev in evs if isinstance(ev, StatusEvent)]
    assert (len(messages), len(statuses)) == (120, 120)
    for ev in messages:  # every sender has its own contact, matched on wa_id
        assert ev.contact is not None
        assert ev.contact.wa_id == ev.message.from_
        k = int(ev.path.rsplit("[", 1)[1][:-1])
        assert ev.contact.name == f"User {ev.path[6]}-{k}"
        assert ev.message.text is not None
        assert ev.message.text.body == f"message {k} to WABA {ev.path[6]} é☺"
    assert all(json.loads(ev.raw)["id"] == ev.wamid for ev in evs)


def test_every_fixture_decodes_without_problems_and_raw_is_valid_json() -> None:
    total = 0
    for name, body in all_bodies().items():
        n = decode(body)
        assert n.problems == [], name
        evs = list(n.events())
        assert evs, name
        total += len(evs)
        for ev in evs:
            assert ev.raw in body, (name, ev.path)
            json.loads(ev.raw)
    assert total >= 370


def test_bad_statuses_become_problems_and_siblings_stay() -> None:
    bad_items = ['{"status":"sent"}', "42", '{"id":"wamid.X","status":7}', "null"]
    value = (
        "{"
        + META
        + ',"statuses":['
        + ",".join([status("wamid.1"), *bad_items, status("wamid.2", "read")])
        + "]}"
    )
    n = decode(wrap(change("messages", value)))
    assert [ev.wamid for ev in n.events()] == ["wamid.1", "wamid.2"]
    assert [p.path for p in n.problems] == [
        f"entry[0].changes[0].value.statuses[{k}]" for k in (1, 2, 3, 4)
    ]
    assert [p.raw for p in n.problems] == [item.encode() for item in bad_items]
    first = n.problems[0]
    assert "bad status" in first.reason
    assert "id" in first.reason
    assert (first.field, first.waba_id, first.phone_number_id) == ("messages", "7", "42")
    assert "$.status" in n.problems[2].reason


def test_bad_message_and_bad_contact() -> None:
    value = (
        "{" + META + ',"contacts":[{"wa_id":5},{"profile":{"name":"Ann"},"wa_id":"1"}],'
        '"messages":[{"id":5,"type":"text"},{"id":"wamid.OK","from":"1","type":"text",'
        '"text":{"body":"hi"}},{"id":"wamid.BADTEXT","type":"text","text":{"body":1}}]}'
    )
    n = decode(wrap(change("messages", value)))
    (ev,) = n.events()
    assert isinstance(ev, MessageEvent)
    assert ev.wamid == "wamid.OK"
    assert ev.contact is not None
    assert ev.contact.name == "Ann"
    reasons = {p.path.rsplit(".", 1)[1]: p.reason for p in n.problems}
    assert set(reasons) == {"contacts[0]", "messages[0]", "messages[2]"}
    assert reasons["contacts[0]"].startswith("bad contact")
    assert reasons["messages[2]"].startswith("bad message")
    assert "$.text.body" in reasons["messages[2]"]


def test_number_out_of_range_in_one_item() -> None:
    value = "{" + META + ',"statuses":[' + status("wamid.1") + ","
    value += '{"id":"wamid.2","status":"sent","timestamp":1e999},' + status("wamid.3") + "]}"
    n = decode(wrap(change("messages", value)))
    assert [ev.wamid for ev in n.events()] == ["wamid.1", "wamid.3"]
    (problem,) = n.problems
    assert problem.path.endswith("statuses[1]")
    assert "out of range" in problem.reason


def test_bad_entries_and_changes_are_problems_with_siblings_kept() -> None:
    good = change("messages", "{" + META + ',"statuses":[' + status("wamid.1") + "]}")
    body = (
        '{"object":"whatsapp_business_account","entry":['
        '{"id":"1"},'  # no changes: an empty entry, nothing lost
        '{"changes":[' + good + "]},"  # no id: decoded without one (issue 11, defect 11)
        '{"id":"3","changes":[{"value":{}},' + good + ',{"field":7,"value":{}}]},'
        '"not an entry",'
        '{"id":"5","changes":{"field":"messages"}},'
        '{"id":"6","changes":[' + good + "]}]}"
    ).encode()
    n = decode(body)
    assert [(ev.waba_id, ev.path) for ev in n.events()] == [
        ("", "entry[1].changes[0].value.statuses[0]"),
        ("3", "entry[2].changes[1].value.statuses[0]"),
        ("6", "entry[5].changes[0].value.statuses[0]"),
    ]
    problems = {p.path: p for p in n.problems}
    assert set(problems) == {
        "entry[1]",
        "entry[2].changes[0]",
        "entry[2].changes[2]",
        "entry[3]",
        "entry[4]",
    }
    assert "without a WABA id" in problems["entry[1]"].reason
    assert problems["entry[1]"].raw == b"{}"  # not its changes: those were decoded
    assert "field" in problems["entry[2].changes[0]"].reason
    assert problems["entry[2].changes[0]"].waba_id == "3"
    assert problems["entry[3]"].raw == b'"not an entry"'


@pytest.mark.parametrize("value", ['"text"', "[1,2]", "null", "3.5", '{"messages":"nope"}'])
def test_known_messaging_field_with_a_bad_value_is_a_problem(value: str) -> None:
    good = change("messages", "{" + META + ',"statuses":[' + status("wamid.1") + "]}")
    n = decode(wrap(change("messages", value), good))
    assert [ev.wamid for ev in n.events()] == ["wamid.1"]
    (problem,) = n.problems
    assert problem.path == "entry[0].changes[0].value"
    assert problem.reason.startswith("bad messages value")
    assert problem.raw == value.encode()


@pytest.mark.parametrize("value", ['"text"', "[1,2]", "null", "3.5", '{"messages":"nope"}', "{}"])
def test_unknown_field_keeps_any_value_whole(value: str) -> None:
    n = decode(wrap(change("brand_new_field", value)))
    assert n.problems == []
    (ev,) = n.events()
    assert isinstance(ev, ChangeEvent)
    assert (ev.field, ev.value, ev.known, ev.raw) == (
        "brand_new_field",
        None,
        False,
        value.encode(),
    )


def test_one_object_field_with_a_bad_value_is_a_problem() -> None:
    bad = change("message_template_status_update", '{"event":"APPROVED","message_template_id":[1]}')
    good = change("account_review_update", '{"decision":"APPROVED"}')
    n = decode(wrap(bad, good))
    (ev,) = n.events()
    assert ev.field == "account_review_update"
    (problem,) = n.problems
    assert problem.reason.startswith("bad message_template_status_update value")
    assert "$.message_template_id" in problem.reason
    assert problem.field == "message_template_status_update"


def test_messaging_value_without_items_is_kept_whole() -> None:
    value = "{" + META + "}"
    n = decode(wrap(change("messages", value)))
    (ev,) = n.events()
    assert isinstance(ev, ChangeEvent)
    assert (ev.value, ev.key, ev.phone_number_id, ev.raw) == (None, None, "42", value.encode())


def test_empty_entry_list_and_empty_arrays() -> None:
    assert len(decode(b'{"object":"whatsapp_business_account","entry":[]}')) == 0
    n = decode(wrap(change("messages", "{" + META + ',"statuses":[]}')))
    assert (len(n), n.problems) == (0, [])


def test_problem_keeps_exact_bytes_of_a_non_ascii_item() -> None:
    bad = '{"type":"text","text":{"body":"مرحبا 😀"}}'
    value = "{" + META + ',"messages":[' + bad + "]}"
    (problem,) = decode(wrap(change("messages", value))).problems
    assert problem.raw == bad.encode()


def test_unknown_field_with_empty_item_arrays_is_kept_whole() -> None:
    # Found by tests/fault/test_fuzz_items.py: the "x" was lost with nothing to fan out.
    value = '{"messages":[],"x":{"kept":true}}'
    (ev,) = decode(wrap(change("some_future_field", value))).events()
    assert isinstance(ev, ChangeEvent)
    assert (ev.field, ev.key, ev.raw) == ("some_future_field", None, value.encode())
    assert len(decode(wrap(change("messages", "{" + META + ',"statuses":[]}')))) == 0
