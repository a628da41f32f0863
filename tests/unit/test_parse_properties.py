"""Properties, with hypothesis: decode() raises nothing but DecodeError, and a mutated item
never costs its siblings."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import load
from wahook.parse import DecodeError, Notification, decode

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = st.sampled_from(
    [
        "object",
        "entry",
        "id",
        "time",
        "changes",
        "field",
        "value",
        "metadata",
        "contacts",
        "messages",
        "statuses",
        "errors",
        "calls",
        "groups",
        "type",
        "status",
        "from",
        "text",
        "body",
        "timestamp",
        "wa_id",
        "phone_number_id",
        "interactive",
        "context",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["whatsapp_business_account", "messages", "text", "sent", "wamid.X"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


def decodes_or_rejects(body: bytes | str) -> Notification | None:
    """The notification, or None when decode() raised DecodeError (with a reason)."""
    reason = ""
    try:
        return decode(body)
    except DecodeError as err:
        reason = err.reason
    assert reason
    return None


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(body: bytes) -> None:
    decodes_or_rejects(body)


@SETTINGS
@given(st.binary(max_size=40), st.integers(min_value=0), st.integers(min_value=0, max_value=8))
def test_fixture_bytes_spliced(junk: bytes, at: int, cut: int) -> None:
    body = load("msg_interactive")
    at %= len(body)
    decodes_or_rejects(body[:at] + junk + body[at + cut :])


@SETTINGS
@given(JSON, st.booleans())
def test_arbitrary_json_documents(doc: Any, ascii_only: bool) -> None:
    decodes_or_rejects(json.dumps(doc, ensure_ascii=ascii_only))


@SETTINGS
@given(JSON, JSON, JSON)
def test_arbitrary_json_inside_the_envelope(entries: Any, value: Any, item: Any) -> None:
    for doc in (
        {"object": "whatsapp_business_account", "entry": entries},
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": entries}]},
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        },
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messages": [item],
                                "statuses": [item],
                                "contacts": [item],
                                "errors": [item],
                            },
                        }
                    ],
                }
            ],
        },
    ):
        n = decodes_or_rejects(json.dumps(doc))
        if n is not None:
            for ev in n.events():
                json.loads(ev.raw)
            for problem in n.problems:
                json.loads(problem.raw)


def _items(doc: dict[str, Any]) -> dict[str, Any]:
    """path -> item, for every message and status of a notification document."""
    out = {}
    for i, entry in enumerate(doc["entry"]):
        for j, change in enumerate(entry["changes"]):
            for key in ("messages", "statuses"):
                for k, item in enumerate(change["value"].get(key, [])):
                    out[f"entry[{i}].changes[{j}].value.{key}[{k}]"] = item
    return out


def _mutate(item: Any, how: int, key: str, junk: Any) -> Any:
    if how == 0 or not isinstance(item, dict):
        return junk  # replace the item
    item = dict(item)
    if how == 1:
        item.pop(key, None)  # drop a key
    else:
        item[key] = junk  # set a key to anything
    return item


BASES = ["batch_240", "msg_interactive", "msg_system", "status_delivered_read_played"]


@SETTINGS
@given(
    st.sampled_from(BASES),
    st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.integers(0, 2),
            st.sampled_from(
                [
                    "id",
                    "type",
                    "status",
                    "from",
                    "text",
                    "timestamp",
                    "errors",
                    "interactive",
                    "system",
                    "conversation",
                ]
            ),
            JSON,
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_mutated_items_never_cost_their_siblings(
    base: str, mutations: list[tuple[int, int, str, Any]], ascii_only: bool
) -> None:
    doc = json.loads(load(base))
    paths = list(_items(doc))
    original = {path: item["id"] for path, item in _items(doc).items()}
    mutated: dict[str, Any] = {}
    for pick, how, key, junk in mutations:
        path = paths[pick % len(paths)]
        i, j, rest = path.split(".", 2)
        change = doc["entry"][int(i[6:-1])]["changes"][int(j[8:-1])]["value"]
        array, k = rest.split(".")[1].split("[")
        items = change[array]
        items[int(k[:-1])] = _mutate(items[int(k[:-1])], how, key, junk)
        mutated[path] = items[int(k[:-1])]

    n = decode(json.dumps(doc, ensure_ascii=ascii_only, separators=(",", ":")))

    events = {ev.path: ev for ev in n.events()}
    problems = {p.path: p for p in n.problems}
    assert not events.keys() & problems.keys()
    assert events.keys() | problems.keys() == set(paths)
    for path, wamid in original.items():
        if path not in mutated:
            assert events[path].wamid == wamid  # every untouched sibling is still an event
    for path, item in mutated.items():
        dumped = json.dumps(item, ensure_ascii=ascii_only, separators=(",", ":")).encode()
        if path in problems:
            got = problems[path].raw
            assert json.loads(got) == item or got == dumped
        else:
            assert json.loads(events[path].raw) == item or events[path].raw == dumped
