"""The text the sink hands PostgreSQL: any string a webhook can carry is accepted by
``text`` and ``jsonb`` (checked against a real server), and nothing is lost — what had to be
escaped keeps its exact bytes beside it."""

from __future__ import annotations

import json

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from wahook.parse import to_epoch
from wahook.sinks import rows

# Any code point, lone surrogates and U+0000 included.
anything = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(anything, min_size=1, max_size=5))
async def test_any_string_fits_text_and_jsonb_without_loss(pg_dsn: str, values: list[str]) -> None:
    raw = json.dumps({"v": values, "n": 123456789012345678901234567890}).encode()
    payload, kept = rows.jsonb_text(raw)
    # Lossless: either the text is the bytes, or the bytes are kept beside it.
    assert (kept is None and payload.encode() == raw) or kept == raw
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetchval("SELECT $1::jsonb::text", payload)
        texts = await conn.fetchval("SELECT $1::text[]", [rows.clean_text(v) for v in values])
    finally:
        await conn.close()
    back = json.loads(stored)
    assert back["n"] == 123456789012345678901234567890
    if kept is None:
        assert back["v"] == values
    # Escaping is visible and reversible for what text cannot hold.
    for value, text in zip(values, texts, strict=True):
        if "\x00" not in value and rows.clean_text(value) == value:
            assert text == value
        else:
            assert "\\u" in text


@given(value=st.one_of(st.text(max_size=14), st.integers(), st.floats(), st.none()))
def test_epoch_fast_path_agrees_with_the_decoder(value: object) -> None:
    assert rows.epoch(value) == to_epoch(value)


def test_status_keys_order_by_rank_then_time() -> None:
    k = rows.content_key(b"{}")
    assert rows.status_key("read", 100, k) > rows.status_key("delivered", 200, k)
    assert rows.status_key("failed", 1, k) > rows.status_key("played", 9, k)
    assert rows.status_key("deleted", 999, k) < rows.status_key("sent", 1, k)
    assert rows.status_key("sent", 200, k) > rows.status_key("sent", 100, k)
