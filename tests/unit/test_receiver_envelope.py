"""``summarize`` reads every body ``decode`` reads (issue 11, defect 3): an organization's
own secret is tried for bodies with lone surrogates, entries without an id, bad changes."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures import all_bodies
from wahook.parse import decode, sign
from wahook.receiver.core import Accepted, Receiver, Request
from wahook.receiver.envelope import summarize
from wahook.verdict import Verdict

ORG_SECRET = "org-secret-a"
SHARED = "deployment-wide-secret"


class OneOrg:
    """Credentials of one organization: phone number id 111, WABA 900."""

    def verify_tokens(self) -> tuple[str, ...]:
        return ()

    def app_secrets(
        self, phone_number_ids: Iterable[str], waba_ids: Iterable[str]
    ) -> dict[str, frozenset[int]]:
        named = "111" in phone_number_ids or "900" in waba_ids
        return {ORG_SECRET: frozenset({1})} if named else {}


def text_body(text: str, entry_id: str = '"900"') -> bytes:
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":' + entry_id + ',"changes":[{'
        '"field":"messages","value":{"messaging_product":"whatsapp","metadata":{'
        '"display_phone_number":"15550001111","phone_number_id":"111"},"contacts":[{'
        '"profile":{"name":"Ann"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234",'
        '"id":"wamid.S","timestamp":"1749416383","type":"text","text":{"body":' + text + "}}]}}]}]}"
    ).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("text", "entry_id", "wabas"),
    [
        (r'"half an emoji \ud83d"', '"900"', ("900",)),  # defect 3
        (r'"fine"', "null", ()),  # an entry without an id: routed by its phone number id
        (r'"\udc00"', "null", ()),
    ],
)
def test_org_signed_body_is_accepted(text: str, entry_id: str, wabas: tuple[str, ...]) -> None:
    body = text_body(text, entry_id)
    receiver = Receiver(verify_tokens=("t",), app_secrets=(SHARED,), credentials=OneOrg())
    r = receiver.handle(
        Request("POST", "/webhook", {}, {"x-hub-signature-256": sign(body, ORG_SECRET)}, body)
    )
    assert isinstance(r, Accepted)
    assert r.verdict == Verdict.of({1})  # the organization's own items only
    s = r.summary
    assert s.problem is None
    assert (s.waba_ids, s.phone_number_ids, s.fields) == (wabas, ("111",), ("messages",))
    assert (s.entries, s.changes, s.messages, s.statuses) == (1, 1, 1, 0)


def test_ids_with_lone_surrogates_come_back_as_sent() -> None:
    body = text_body('"x"', r'"9\ud800"').replace(b'"111"', rb'"1\udfff1"')
    s = summarize(body)
    assert (s.waba_ids, s.phone_number_ids) == (("9\ud800",), ("1\udfff1",))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"{",
        b'{"object":"page","entry":[]}',
        b"\xff",
        b"[" * 100_000,
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
)
def test_not_a_notification_is_a_problem_never_an_exception(body: bytes) -> None:
    s = summarize(body)
    assert s.problem is not None
    assert s.problem.startswith("not a WhatsApp notification")


def test_summary_agrees_with_decode_on_every_fixture() -> None:
    for name, body in all_bodies().items():
        s = summarize(body)
        n = decode(body)
        kinds = [ev.kind for ev in n.events()]
        assert s.problem is None, name
        assert s.messages == kinds.count("message"), name
        assert s.statuses == kinds.count("status"), name
        pnids = {ev.phone_number_id for ev in n.events() if ev.phone_number_id}
        assert pnids <= set(s.phone_number_ids), name


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_summarize_never_raises(body: bytes) -> None:
    s = summarize(body)
    assert s.size == len(body)


def test_a_body_too_large_for_one_message_splits_with_lone_surrogates() -> None:
    from wahook.receiver.envelope import split

    messages = ",".join(
        '{"from":"1650555","id":"wamid.' + str(k) + '","timestamp":"1","type":"text",'
        '"text":{"body":"' + ("\\ud800" if k % 7 == 0 else "x") * 40 + '"}}'
        for k in range(200)
    )
    big = (
        '{"object":"whatsapp_business_account","entry":[{"id":"900","changes":[{"field":'
        '"messages","value":{"metadata":{"phone_number_id":"111"},"messages":[' + messages
        + "]}}]}]}"
    ).encode()  # fmt: skip
    parts = split(big, 8000)
    assert len(parts) > 1
    assert all(len(p) <= 8000 for p in parts)
    whole = [(ev.wamid, ev.raw, ev.message) for ev in decode(big).events()]
    pieces = [(ev.wamid, ev.raw, ev.message) for p in parts for ev in decode(p).events()]
    assert pieces == whole
