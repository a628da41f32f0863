"""PostgresSink against a real PostgreSQL: what each kind of event becomes, and the
contract it shares with the in-memory reference model."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.fixtures import all_bodies, load
from wahook.parse import Problem
from wahook.sinks.base import Record
from wahook.sinks.postgres import (
    Item,
    Outbound,
    PostgresSink,
    TenantRouter,
    add_organization,
    apply_items,
    record_outbound,
)
from wahook.testing import (
    PHONE_NUMBER_ID,
    WABA_ID,
    MemorySink,
    dump_tables,
    notification,
    record,
    status,
    text_message,
)

INCOMING = "SELECT * FROM incoming_messages"


async def _org(pool: asyncpg.Pool) -> int:
    return await add_organization(
        pool, name="acme", phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID
    )


async def _campaign(pool: asyncpg.Pool, org: int, name: str = "spring") -> int:
    cid: int = await pool.fetchval(
        "INSERT INTO campaigns (organization_id, name, template_name) VALUES ($1, $2, 'promo')"
        " RETURNING id",
        org,
        name,
    )
    return cid


async def test_every_fixture_is_stored_and_a_replay_changes_nothing(pool: asyncpg.Pool) -> None:
    await _org(pool)
    sink = PostgresSink(pool)
    records = [record(body, id=name) for name, body in sorted(all_bodies().items())]
    first = await sink.write(records)
    assert first.failed == {}
    assert first.applied > 0
    before = await dump_tables(pool)
    again = await sink.write(records)
    assert again.failed == {}
    assert again.duplicates == again.applied + again.quarantined - sum(
        len(r.problems) for r in records
    )
    assert await dump_tables(pool) == before


async def test_statuses_only_move_forward_and_keep_earliest_times(pool: asyncpg.Pool) -> None:
    await _org(pool)
    sink = PostgresSink(pool)
    w = "wamid.forward"
    for s, ts in [("read", 300), ("delivered", 250), ("sent", 100), ("delivered", 200)]:
        assert (await sink.write([record(notification(statuses=[status(w, s, ts)]))])).failed == {}
    row = await pool.fetchrow("SELECT * FROM messages WHERE whatsapp_message_id = $1", w)
    assert row["message_status"] == "read"
    assert row["status_rank"] == 3
    assert row["direction"] == "outbound"
    assert row["sent_at"].timestamp() == 100
    assert row["delivered_at"].timestamp() == 200
    assert row["read_at"].timestamp() == 300
    events = await pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE whatsapp_message_id=$1", w
    )
    assert events == 3  # sent, delivered, read: one audit row per (wamid, status)


async def test_failed_is_terminal_and_keeps_its_error(pool: asyncpg.Pool) -> None:
    await _org(pool)
    sink = PostgresSink(pool)
    w = "wamid.failed"
    err = {
        "code": 131026,
        "title": "Message undeliverable",
        "error_data": {"details": "Receiver is incapable of receiving this message"},
    }
    await sink.write([record(notification(statuses=[status(w, "failed", 150, errors=[err])]))])
    await sink.write([record(notification(statuses=[status(w, "read", 400)]))])
    row = await pool.fetchrow("SELECT * FROM messages WHERE whatsapp_message_id = $1", w)
    assert row["message_status"] == "failed"
    assert row["error_code"] == "131026"
    assert row["error_message"] == "Receiver is incapable of receiving this message"
    assert row["read_at"].timestamp() == 400
    assert json.loads(row["errors"])[0]["code"] == 131026


async def test_pricing_and_conversation_are_kept(pool: asyncpg.Pool) -> None:
    await _org(pool)
    sink = PostgresSink(pool)
    await sink.write([record(load("status_sent_pricing"))])
    row = await pool.fetchrow("SELECT * FROM messages")
    assert json.loads(row["pricing"])["pricing_model"] == "CBP"
    assert row["conversation_id"] == "0ba4d56eb6bb2a52f9bc9d7e8d5b7b1e"
    assert row["biz_opaque_callback_data"] == "campaign=42;audience=7"
    assert row["phone_number"] == "16505551234"


async def test_status_first_and_outbound_first_converge(pool: asyncpg.Pool, fresh_db) -> None:
    org = await _org(pool)
    camp = await _campaign(pool, org)
    w = "wamid.converge"
    out = Outbound(org, w, "16505551234", campaign_id=camp, content="Hi!", template_name="promo")
    statuses = [record(notification(statuses=[status(w, "delivered", 210)]))]
    # Here: status first, then the sender's record.
    await PostgresSink(pool).write(statuses)
    await record_outbound(pool, out)
    status_first = await dump_tables(pool)
    # In another database: the sender's record first.
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as other:
        org2 = await _org(other)
        camp2 = await _campaign(other, org2)
        assert (org2, camp2) == (org, camp)
        await record_outbound(other, out)
        await PostgresSink(other).write(statuses)
        assert await dump_tables(other) == status_first
    audience = await pool.fetchrow("SELECT * FROM campaign_audience")
    assert audience["whatsapp_message_id"] == w
    assert audience["message_status"] == "delivered"
    assert audience["delivered_at"].timestamp() == 210
    msg = await pool.fetchrow("SELECT * FROM messages")
    assert (msg["campaign_id"], msg["content"], msg["message_status"]) == (camp, "Hi!", "delivered")


async def test_incoming_message_details(pool: asyncpg.Pool) -> None:
    await _org(pool)
    sink = PostgresSink(pool)
    names = [
        "msg_interactive",
        "msg_image",
        "msg_button",
        "msg_reaction",
        "msg_location",
        "msg_contacts",
        "msg_order",
        "msg_referral_product",
    ]
    result = await sink.write([record(load(n), id=n) for n in names])
    assert result.failed == {}
    rows = {r["message_type"]: r for r in await pool.fetch("SELECT * FROM incoming_messages")}
    inter = await pool.fetch(
        "SELECT * FROM incoming_messages WHERE message_type = 'interactive' ORDER BY sent_at"
    )
    assert inter[0]["interactive_type"] == "button_reply"
    assert json.loads(inter[0]["interactive_data"])["button_reply"]["id"] == "change-button"
    assert inter[0]["content"] == "Change"
    assert inter[0]["context_message_id"].startswith("wamid.")
    assert inter[0]["profile_name"] == "Sheena Nelson"
    assert inter[0]["from_phone_number"] == "16505551234"
    assert rows["image"]["media_id"] is not None
    assert rows["image"]["media_mime_type"] is not None
    assert rows["reaction"]["reaction_message_id"] is not None
    assert json.loads(rows["location"]["location"])["latitude"] is not None
    assert json.loads(rows["contacts"]["contacts"])
    assert json.loads(rows["order"]["order_data"])["product_items"]
    assert rows["button"]["interactive_type"] == "button"
    inbound = await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'inbound'")
    incoming = await pool.fetchval("SELECT count(*) FROM incoming_messages")
    assert inbound == incoming > len(names) - 1


async def test_reply_links_to_campaign_in_either_order(pool: asyncpg.Pool) -> None:
    org = await _org(pool)
    camp = await _campaign(pool, org)
    sink = PostgresSink(pool)
    # A reply to a campaign message recorded before it ...
    await record_outbound(pool, Outbound(org, "wamid.out1", "16505551234", campaign_id=camp))
    await sink.write(
        [
            record(
                notification(
                    messages=[text_message("wamid.in1", "yes", 500, reply_to="wamid.out1")]
                )
            )
        ]
    )
    # ... and a reply that arrives before the sender records the message it replies to.
    await sink.write(
        [
            record(
                notification(
                    messages=[
                        text_message(
                            "wamid.in2", "no", 600, sender="16505550000", reply_to="wamid.out2"
                        )
                    ]
                )
            )
        ]
    )
    await record_outbound(pool, Outbound(org, "wamid.out2", "16505550000", campaign_id=camp))
    incoming = {
        r["whatsapp_message_id"]: r for r in await pool.fetch("SELECT * FROM incoming_messages")
    }
    assert incoming["wamid.in1"]["context_campaign_id"] == camp
    assert incoming["wamid.in2"]["context_campaign_id"] == camp
    audience = {r["phone_number"]: r for r in await pool.fetch("SELECT * FROM campaign_audience")}
    assert audience["16505551234"]["replied_at"].timestamp() == 500
    assert audience["16505551234"]["reply_message_id"] == "wamid.in1"
    assert audience["16505550000"]["replied_at"].timestamp() == 600
    # A message that is no reply links to nothing.
    await sink.write([record(notification(messages=[text_message("wamid.in3", "hi", 700)]))])
    row = await pool.fetchrow(
        "SELECT * FROM incoming_messages WHERE whatsapp_message_id='wamid.in3'"
    )
    assert row["context_campaign_id"] is None


async def test_other_fields_are_audited(pool: asyncpg.Pool) -> None:
    await _org(pool)
    names = [n for n in all_bodies() if n.startswith("field_")]
    result = await PostgresSink(pool).write([record(load(n), id=n) for n in names])
    assert result.failed == {}
    kinds = {r["event_type"] for r in await pool.fetch("SELECT event_type FROM webhook_events")}
    assert "message_template_status_update" in kinds
    assert "phone_number_quality_update" in kinds or "phone_number_name_update" in kinds
    changes = await pool.fetch("SELECT * FROM webhook_events WHERE event_kind = 'change'")
    assert all(json.loads(r["payload"]) is not None for r in changes)


async def test_unknown_tenant_is_quarantined_then_replayed(pool: asyncpg.Pool, fresh_db) -> None:
    sink = PostgresSink(pool)
    body = notification(
        statuses=[status("wamid.t1", "read", 300)], messages=[text_message("wamid.t2")]
    )
    rec = record(body)
    result = await sink.write([rec])
    assert result.failed == {}
    assert result.quarantined == 2
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    q = await pool.fetch("SELECT * FROM quarantine WHERE resolved_at IS NULL")
    assert {r["kind"] for r in q} == {"tenant"}
    assert all(PHONE_NUMBER_ID in r["reason"] for r in q)
    assert (
        await pool.fetchval("SELECT count(*) FROM webhook_events WHERE organization_id IS NULL")
        == 2
    )
    # Nothing to replay yet.
    assert (await sink.replay_quarantine()).applied == 0
    await _org(pool)
    replayed = await sink.replay_quarantine()
    assert (replayed.applied, replayed.still_unrouted) == (2, 0)
    assert (await sink.replay_quarantine()).applied == 0  # twice changes nothing
    after = await dump_tables(pool)
    assert all(r["resolved"] for r in after["quarantine"])
    # The same as writing with the organization configured from the start.
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as other:
        await _org(other)
        await PostgresSink(other).write([rec])
        direct = await dump_tables(other)
    assert after["messages"] == direct["messages"]
    assert after["incoming_messages"] == direct["incoming_messages"]
    assert after["webhook_events"] == direct["webhook_events"]


async def test_route_by_waba_when_phone_number_unknown(pool: asyncpg.Pool) -> None:
    org = await add_organization(pool, name="by-waba", waba_id=WABA_ID)
    await PostgresSink(pool).write([record(notification(statuses=[status("wamid.w", "sent")]))])
    assert await pool.fetchval("SELECT organization_id FROM messages") == org


async def test_router_notices_changed_organizations(pool: asyncpg.Pool) -> None:
    sink = PostgresSink(pool)
    org = await add_organization(pool, name="old", phone_number_id="999")
    await sink.write([record(notification(statuses=[status("wamid.a", "sent")]))])
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    await pool.execute(
        "UPDATE organizations SET whatsapp_phone_number_id = $1 WHERE id = $2", PHONE_NUMBER_ID, org
    )
    await sink.write([record(notification(statuses=[status("wamid.b", "sent")]))])
    assert await pool.fetchval("SELECT organization_id FROM messages") == org


async def test_problems_are_quarantined_with_their_bytes(pool: asyncpg.Pool) -> None:
    await _org(pool)
    bad = {"id": "wamid.bad", "status": 17}  # status must be a string
    body = notification(statuses=[bad, status("wamid.good", "sent")])
    rec = record(body)
    assert len(rec.problems) == 1
    result = await PostgresSink(pool).write([rec])
    assert result.failed == {}
    row = await pool.fetchrow("SELECT * FROM quarantine")
    assert row["kind"] == "problem"
    assert json.loads(bytes(row["raw"])) == bad
    assert row["source_message_id"] == rec.id
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1


async def test_lossless_nul_surrogates_and_long_numbers(pool: asyncpg.Pool) -> None:
    await _org(pool)
    big = 123456789012345678901234567890
    nul = text_message("wamid.nul", "a\x00b")
    lone = text_message("wamid.lone", "x\ud800y", quote={"n": big})
    body = notification(messages=[nul, lone], profile_name="Z\x00\ud83d")
    result = await PostgresSink(pool).write([record(body)])
    assert result.failed == {}
    rows = {
        r["whatsapp_message_id"]: r for r in await pool.fetch("SELECT * FROM incoming_messages")
    }
    assert rows["wamid.nul"]["content"] == "a\\u0000b"
    assert rows["wamid.lone"]["content"] == "x\\ud800y"
    assert rows["wamid.nul"]["profile_name"] == "Z\\u0000\\ud83d"
    # The exact item bytes are kept where jsonb had to differ from them.
    for wamid, item in (("wamid.nul", nul), ("wamid.lone", lone)):
        raw = bytes(rows[wamid]["payload_raw"])
        assert json.loads(raw) == item
        audit = await pool.fetchrow(
            "SELECT payload_raw FROM webhook_events WHERE whatsapp_message_id = $1", wamid
        )
        assert json.loads(bytes(audit["payload_raw"])) == item
    # 30 digits survive in jsonb, digit for digit.
    assert await pool.fetchval(
        "SELECT payload->'quote'->>'n' FROM incoming_messages WHERE whatsapp_message_id = $1",
        "wamid.lone",
    ) == str(big)


async def test_a_poisonous_item_is_isolated(pool: asyncpg.Pool) -> None:
    """A batch PostgreSQL refuses is bisected down to the record, then down to the item:
    the refused item is a problem with its raw bytes, its sibling and the other records
    are stored, and every record is committed (a record without raw bytes too: the item
    keeps its own)."""
    await _org(pool)
    # A real database-side failure for one wamid: a trigger that refuses it.
    await pool.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.whatsapp_message_id = 'wamid.poison' THEN
                RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON messages
        FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    records = [
        record(notification(statuses=[status(f"wamid.{i}", "sent")]), id=f"r{i}") for i in range(7)
    ]
    poison_body = notification(
        statuses=[status("wamid.sibling", "sent"), status("wamid.poison", "sent")]
    )
    poison = record(poison_body, id="poison")
    records.insert(3, poison)
    no_bytes = Record("poison-no-bytes", poison.events[1:], (), b"")
    result = await PostgresSink(pool).write([*records, no_bytes])
    assert result.failed == {}
    assert result.poisoned == {}
    assert not result.transient
    assert (result.applied, result.quarantined) == (8, 2)
    assert await pool.fetchval("SELECT count(*) FROM messages") == 8
    (q,) = await pool.fetch("SELECT * FROM quarantine")
    assert q["kind"] == "problem"
    assert q["reason"] == "PostgreSQL refused this item: CheckViolationError: refused"
    assert bytes(q["raw"]) == poison.events[1].raw
    assert q["source_message_id"] == "poison"


async def test_a_record_whose_problems_are_refused_is_quarantined_whole(
    pool: asyncpg.Pool,
) -> None:
    """Only when its problems alone cannot be stored is a record set aside whole: with
    its raw bytes as a ``poison`` row, or, without them, reported failed."""
    await _org(pool)
    await pool.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.kind = 'problem' THEN
                RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON quarantine
        FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    good = [record(notification(statuses=[status(f"wamid.{i}", "sent")])) for i in range(3)]
    body = notification(statuses=[{"id": "wamid.bad", "status": 1}, status("wamid.x", "read")])
    poison = record(body, id="poison")
    assert len(poison.problems) == 1
    no_bytes = Record("poison-no-bytes", poison.events, poison.problems, b"")
    result = await PostgresSink(pool).write([*good, poison, no_bytes])
    assert set(result.poisoned) == {"poison"}
    assert "refused" in result.poisoned["poison"]
    assert set(result.failed) == {"poison-no-bytes"}
    assert not result.transient
    # Its events were stored on the way (a redelivery applies them again, as duplicates).
    assert await pool.fetchval("SELECT count(*) FROM messages") == 4
    q = await pool.fetchrow("SELECT * FROM quarantine WHERE kind = 'poison'")
    assert bytes(q["raw"]) == body
    assert q["source_message_id"] == "poison"


async def test_transient_errors_are_retried(pool: asyncpg.Pool) -> None:
    await _org(pool)
    # Fails twice with a serialization failure, then lets the batch through. The sequence
    # is not rolled back with the failed transactions, so it counts attempts.
    await pool.execute("""
        CREATE SEQUENCE attempts;
        CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('attempts') <= 2 THEN
                RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER flaky BEFORE INSERT ON messages
        FOR EACH STATEMENT EXECUTE FUNCTION flaky();
    """)
    sink = PostgresSink(pool, backoff=0.001)
    result = await sink.write([record(notification(statuses=[status("wamid.r", "sent")]))])
    assert result.failed == {}
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1
    assert await pool.fetchval("SELECT last_value FROM attempts") == 3


async def test_transient_errors_exhausted_fail_the_whole_batch(pool: asyncpg.Pool) -> None:
    await _org(pool)
    await pool.execute("""
        CREATE FUNCTION down() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'down' USING ERRCODE = 'deadlock_detected';
        END $$;
        CREATE TRIGGER down BEFORE INSERT ON webhook_events
        FOR EACH STATEMENT EXECUTE FUNCTION down();
    """)
    records = [record(notification(statuses=[status(f"wamid.{i}", "sent")])) for i in range(3)]
    result = await PostgresSink(pool, retries=2, backoff=0.001).write(records)
    assert result.transient
    assert set(result.failed) == {r.id for r in records}
    assert all(v.startswith("transient:") for v in result.failed.values())
    assert await pool.fetchval("SELECT count(*) FROM webhook_events") == 0


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
async def test_same_rows_as_the_memory_model(pool: asyncpg.Pool, batch_size: int) -> None:
    """The contract: PostgresSink and MemorySink hold the same rows after the same input."""
    org = await _org(pool)
    camp = await _campaign(pool, org)
    memory = MemorySink()
    memory.add_organization(org, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID)
    memory.add_campaign(camp, org)
    records = [record(body, id=name) for name, body in sorted(all_bodies().items())]
    records.append(record(notification(statuses=[status("wamid.out", "read", 900)])))
    records.append(
        record(notification(messages=[text_message("wamid.re", "ok", 950, reply_to="wamid.out")]))
    )
    outbound = Outbound(org, "wamid.out", "16505551234", campaign_id=camp, content="c")
    sink = PostgresSink(pool)
    for i in range(0, len(records), batch_size):
        part = records[i : i + batch_size]
        got = await sink.write(part)
        want = await memory.write(part)
        assert got.failed == want.failed == {}
        assert (got.applied, got.quarantined) == (want.applied, want.quarantined)
    await record_outbound(pool, outbound)
    await memory.record_outbound(outbound)
    assert await dump_tables(pool) == memory.dump()


async def test_problem_record_without_events(pool: asyncpg.Pool) -> None:
    """A body the decoder rejected whole reaches the sink as one problem and is kept."""
    body = b'{"object": "page", "entry": []}'
    rec = Record("whole", (), [Problem("$", "not a WhatsApp notification", body)], body)
    result = await PostgresSink(pool).write([rec])
    assert (result.failed, result.quarantined) == ({}, 1)
    assert bytes(await pool.fetchval("SELECT raw FROM quarantine")) == body


async def test_a_recorded_message_widens_in_place_with_its_statuses(pool: asyncpg.Pool) -> None:
    """The schema leaves room for what statuses add to a recorded outbound message: its
    first status (keys, times, pricing, conversation) and the next ones rewrite the row in
    its own page (HOT: no new index entries), the cheap path of the hottest statement.
    A row that outgrew its page would move to another one."""
    org = await _org(pool)
    wamids = [f"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI{n:024d}" for n in range(600)]
    await record_outbound(
        pool,
        [Outbound(org, w, f"1650555{n:04d}", template_name="promo") for n, w in enumerate(wamids)],
    )
    page = "SELECT whatsapp_message_id, (ctid::text::point)[0] AS page FROM messages"
    before = {r["whatsapp_message_id"]: r["page"] for r in await pool.fetch(page)}
    extra = {
        "conversation": {
            "id": "0ba4d56eb6bb2a52f9bc9d7e8d5b7b1e",
            "expiration_timestamp": "1749502783",
            "origin": {"type": "marketing"},
        },
        "pricing": {"billable": True, "pricing_model": "CBP", "category": "marketing"},
    }
    # A campaign's life: the 'sent' statuses of all its messages in one burst (one batch),
    # then 'delivered' and 'read' spread over several batches.
    sink = PostgresSink(pool)
    for step, name in enumerate(("sent", "delivered", "read")):
        for part in [wamids] if step == 0 else [wamids[k::6] for k in range(6)]:
            result = await sink.write(
                [record(notification(statuses=[status(w, name, 1749416383 + step, **extra)]))
                 for w in part]
            )  # fmt: skip
            assert result.failed == {}
    after = {r["whatsapp_message_id"]: r["page"] for r in await pool.fetch(page)}
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE message_status = 'read'") == 600
    stayed = sum(after[w] == before[w] for w in wamids)
    assert stayed >= 0.9 * len(wamids), f"{stayed} of {len(wamids)} rows kept their page"


async def test_writes_sharing_one_transaction(pool: asyncpg.Pool, fresh_db) -> None:
    """Two writes and a sender's record in one transaction on one connection (each write
    stages its rows afresh) leave the same tables as each committed on its own."""
    org = await _org(pool)
    camp = await _campaign(pool, org)
    w = "wamid.shared"
    out = Outbound(org, w, "16505551234", campaign_id=camp, content="Hi!")
    parts = [
        [
            record(
                notification(statuses=[status(w, "sent", 100), status("wamid.other", "read", 90)])
            )
        ],
        [record(notification(statuses=[status(w, "delivered", 200)]))],
    ]
    router = TenantRouter()
    async with pool.acquire() as conn, conn.transaction():
        for part in parts:
            await apply_items(conn, [Item(r.id, r.received_at, r.events) for r in part], router)
        await record_outbound(conn, out)
    together = await dump_tables(pool)
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as other:
        assert (await _org(other), await _campaign(other, org)) == (org, camp)
        for part in parts:
            assert (await PostgresSink(other).write(part)).failed == {}
        await record_outbound(other, out)
        assert await dump_tables(other) == together
    audience = await pool.fetchrow("SELECT message_status, delivered_at FROM campaign_audience")
    assert audience["message_status"] == "delivered"
    assert audience["delivered_at"].timestamp() == 200


async def test_dumps_order_rows_alike_whatever_the_key_order_of_their_json(
    pool: asyncpg.Pool,
) -> None:
    """Two messages whose first differing column is JSON (pricing): PostgreSQL's jsonb
    and the model's dicts order their keys differently, and the dumps must still list
    the rows in one order (a hypothesis example of the replay test caught them apart)."""
    org = await _org(pool)
    pricing = [
        {"billable": True, "pricing_model": "PMP", "category": "marketing"},
        {
            "billable": False,
            "pricing_model": "PMP",
            "type": "free_entry_point",
            "category": "service",
        },
    ]
    records = [
        record(notification(statuses=[status(f"wamid.out{n}", "delivered", 100, pricing=p)]))
        for n, p in enumerate(pricing)
    ]
    assert (await PostgresSink(pool).write(records)).failed == {}
    memory = MemorySink()
    memory.add_organization(org, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID)
    await memory.write(records)
    assert (await dump_tables(pool))["messages"] == memory.dump()["messages"]
