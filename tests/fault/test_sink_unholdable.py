"""Items the decoder accepts but PostgreSQL cannot hold (issue 11, defect 4), against a
real PostgreSQL: a number in an ignored key beyond jsonb's numeric range makes every
statement carrying the item fail. The item must be quarantined as a problem with its raw
bytes, its siblings stored, and the record committed (not failed, not poisoned whole)."""

from __future__ import annotations

import asyncpg
import pytest

from wahook.runtime.pipeline import Pipeline
from wahook.sinks import rows
from wahook.sinks.postgres import PostgresSink, add_organization
from wahook.testing import (
    PHONE_NUMBER_ID,
    WABA_ID,
    MemorySink,
    MemorySource,
    dump_tables,
    notification,
    record,
    status,
    text_message,
)

HUGE_INT = "9" * 131_073
# Numbers the decoder accepts in a key it ignores and jsonb refuses (131,072 digits before
# the point, 16,383 after, exponents up to 2^30).
# The last: 16,384 digits after the point with a 4-digit exponent (rows.unholdable reads
# items that long whole).
UNHOLDABLE = ["1.0e131073", "1e-16384", HUGE_INT, "-0.0001e131076", "0e-16384", "1e1073741824",
              "0." + "1" * 6385 + "e-9999"]  # fmt: skip
# Their neighbours, which jsonb holds.
HOLDABLE = ["1e131071", "1e-16383", HUGE_INT[1:], "-0.0001e131075", "0e999999", "1.5e-16382",
            "0.000e-16380", "1E+00005", "12", "-0.5", "1e0000000000000000005",
            "0." + "1" * 6384 + "e-9999"]  # fmt: skip
_MARK = '"@NUMBER@"'


def with_number(body: bytes, literal: str) -> bytes:
    """``body`` with its placeholder string replaced by the bare number ``literal`` (json
    cannot write such numbers itself)."""
    text = body.decode("ascii")
    assert text.count(_MARK) == 1
    return text.replace(_MARK, literal).encode("ascii")


def body_with(literal: str) -> bytes:
    """Three valid statuses and, third of the four, one carrying ``literal`` in a key
    nobody reads."""
    items = [status(f"wamid.ok{i}", "delivered", 100 + i) for i in range(3)]
    items.insert(2, status("wamid.bad", "read", 200, unread=_MARK[1:-1]))
    return with_number(notification(statuses=items), literal)


async def _org(pool: asyncpg.Pool) -> int:
    return await add_organization(
        pool, name="acme", phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID
    )


def _model() -> MemorySink:
    memory = MemorySink()
    memory.add_organization(1, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID)
    return memory


@pytest.mark.parametrize("literal", UNHOLDABLE + HOLDABLE, ids=lambda s: s[:16])
async def test_the_check_agrees_with_postgresql(pool: asyncpg.Pool, literal: str) -> None:
    """``rows.unholdable`` (the reference model's rule) says what PostgreSQL says."""
    raw = f'{{"id":"wamid.x","x":[{literal}]}}'.encode()
    try:
        await pool.fetchval("SELECT $1::text::jsonb IS NOT NULL", raw.decode())
        holds = True
    except asyncpg.NumericValueOutOfRangeError:
        holds = False
    assert holds == (literal in HOLDABLE)
    assert rows.unholdable(raw) == (not holds)


@pytest.mark.parametrize("literal", ["1.0e131073", "1e-16384", HUGE_INT], ids=lambda s: s[:16])
async def test_one_unholdable_item_is_quarantined_and_its_siblings_stored(
    pool: asyncpg.Pool, literal: str
) -> None:
    await _org(pool)
    body = body_with(literal)
    rec = record(body, id="sqs-1")
    assert len(rec.events) == 4
    assert not rec.problems
    bad = rec.events[2]
    assert literal.encode() in bad.raw
    result = await PostgresSink(pool).write([rec])
    assert result.failed == {}
    assert result.poisoned == {}
    assert (result.applied, result.quarantined) == (3, 1)
    stored = await pool.fetch("SELECT whatsapp_message_id FROM messages ORDER BY 1")
    assert [r[0] for r in stored] == ["wamid.ok0", "wamid.ok1", "wamid.ok2"]
    assert await pool.fetchval("SELECT count(*) FROM webhook_events") == 3
    (q,) = await pool.fetch("SELECT * FROM quarantine")
    assert q["kind"] == "problem"
    assert q["reason"] == rows.UNHOLDABLE_NUMBER
    assert bytes(q["raw"]) == bad.raw
    assert q["path"] == bad.path
    assert q["source_message_id"] == "sqs-1"
    # The same rows as the reference model, and a redelivery changes nothing.
    memory = _model()
    await memory.write([rec])
    assert await dump_tables(pool) == memory.dump()
    again = await PostgresSink(pool).write([rec])
    assert again.failed == {}
    assert again.duplicates == 3
    assert await dump_tables(pool) == memory.dump()


async def test_an_unholdable_item_in_a_batch_of_records(pool: asyncpg.Pool) -> None:
    """Among other records of one batch, and in an incoming message and another field:
    every record committed, the three unholdable items quarantined, nothing else."""
    await _org(pool)
    message = text_message("wamid.in.bad", "hi", 300, extra=_MARK[1:-1])
    template = {"event": "APPROVED", "message_template_id": 7, "x": _MARK[1:-1]}
    bodies = [notification(statuses=[status(f"wamid.s{i}", "sent", 100)]) for i in range(6)]
    bodies.insert(1, body_with("1e-16384"))
    with_message = notification(messages=[message, text_message("wamid.in.ok", "yo", 300)])
    bodies.insert(4, with_number(with_message, "1.0e131073"))
    with_template = notification(value=template, field="message_template_status_update")
    bodies.append(with_number(with_template, "1e-99999"))
    records = [record(b, id=f"sqs-{i}") for i, b in enumerate(bodies)]
    result = await PostgresSink(pool).write(records)
    assert result.failed == {}
    assert result.poisoned == {}
    assert result.quarantined == 3
    memory = _model()
    await memory.write(records)
    got = await dump_tables(pool)
    assert got == memory.dump()
    assert sorted(q["path"] for q in got["quarantine"]) == [
        "entry[0].changes[0].value",
        "entry[0].changes[0].value.messages[0]",
        "entry[0].changes[0].value.statuses[2]",
    ]
    assert await pool.fetchval("SELECT count(*) FROM incoming_messages") == 1


async def test_without_quarantine_the_record_is_reported_failed(pool: asyncpg.Pool) -> None:
    await _org(pool)
    rec = record(body_with("1e-16384"), id="sqs-1")
    result = await PostgresSink(pool, quarantine_poison=False).write([rec])
    assert list(result.failed) == ["sqs-1"]
    assert "NumericValueOutOfRange" in result.failed["sqs-1"]
    assert await pool.fetchval("SELECT count(*) FROM quarantine") == 0


async def test_through_the_pipeline(pool: asyncpg.Pool) -> None:
    """The pipeline acknowledges every body: the unholdable item is a quarantined problem,
    its siblings and the other bodies are stored."""
    await _org(pool)
    bodies = [notification(statuses=[status(f"wamid.p{i}", "sent", 100)]) for i in range(20)]
    bodies.insert(7, body_with(HUGE_INT))
    source = MemorySource(bodies, batch_max=10)
    stats = await Pipeline(source, PostgresSink(pool), batch_size=50).run()
    assert source.failed == []
    assert source.acked == 21
    assert stats.events == 24
    assert await pool.fetchval("SELECT count(*) FROM messages") == 23
    (q,) = await pool.fetch("SELECT kind, reason, raw FROM quarantine")
    assert (q["kind"], q["reason"]) == ("problem", rows.UNHOLDABLE_NUMBER)
    assert HUGE_INT.encode() in bytes(q["raw"])


async def test_a_transient_failure_while_isolating_fails_the_record(pool: asyncpg.Pool) -> None:
    """Isolating takes several transactions; if one fails for a transient reason the
    record is reported failed (and transient), so the source redelivers it: the parts
    already stored then apply again as duplicates."""
    await _org(pool)
    # Rows are written sorted by wamid: the whole record hits the permanent refusal first.
    await pool.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.whatsapp_message_id = 'wamid.a-poison' THEN
                RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
            ELSIF NEW.whatsapp_message_id = 'wamid.z-flaky' THEN
                RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON messages
        FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    items = [status(w, "sent", 100) for w in ("wamid.ok", "wamid.a-poison", "wamid.z-flaky")]
    rec = record(notification(statuses=items), id="sqs-1")
    result = await PostgresSink(pool, retries=1, backoff=0.001).write([rec])
    assert list(result.failed) == ["sqs-1"]
    assert result.failed["sqs-1"].startswith("transient: ")
    assert result.transient
    assert result.poisoned == {}
    assert await pool.fetchval("SELECT count(*) FROM quarantine") == 0
