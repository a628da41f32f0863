"""Tenancy verdicts as properties, on random inputs against a real PostgreSQL.

Two organizations (1: the traffic phone number, 2: "999"); every record carries a random
verdict (any, {1}, {2}, {1, 2}, unverified), redeliveries of one body included. Then:

- any permutation and batching gives the rows of the in-memory reference model;
- the tables other than the quarantine hold exactly what writing only the records whose
  verdict allows their organization (and nothing else) gives: a disallowed item leaves no
  trace outside the quarantine, whatever came before or after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_store_properties import _model, _run, _seed, scenarios
from wahook.sinks.base import Record
from wahook.sinks.postgres import PostgresSink, add_organization
from wahook.testing import dump_tables
from wahook.verdict import ANY, UNVERIFIED, Verdict

OTHER_PHONE = "999"  # the strategies' "unknown tenant", here organization 2
VERDICTS = [ANY, Verdict.of({1}), Verdict.of({2}), Verdict.of({1, 2}), UNVERIFIED]
OUTSIDE_QUARANTINE = ("messages", "incoming_messages", "campaign_audience", "webhook_events")


def organization_of(record: Record) -> int | None:
    """The organization the record's items route to (each generated body names one)."""
    for ev in record.events:
        return 2 if ev.phone_number_id == OTHER_PHONE else 1
    return None


@st.composite
def verdict_scenarios(draw: st.DrawFn) -> tuple[list[Any], list[Any], list[int]]:
    ops, permuted, sizes = draw(scenarios())
    verdicts = {id(op): draw(st.sampled_from(VERDICTS)) for op in ops if isinstance(op, Record)}

    def judged(ops: list[Any]) -> list[Any]:
        return [dataclasses.replace(op, verdict=verdicts[id(op)]) if isinstance(op, Record)
                else op for op in ops]  # fmt: skip

    return judged(ops), judged(permuted), sizes


async def _seed_two(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    assert await add_organization(pool, name="other", phone_number_id=OTHER_PHONE) == 2


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=verdict_scenarios())
async def test_verdicts_are_order_independent_and_leave_no_trace(
    fresh_db: Callable[[], AbstractAsyncContextManager[str]],
    scenario: tuple[list[Any], list[Any], list[int]],
) -> None:
    ops, permuted, sizes = scenario
    want = (await _model(ops, other_phone=OTHER_PHONE)).dump()
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await _seed_two(pool)
        await _run(PostgresSink(pool), pool, permuted, sizes)
        got = await dump_tables(pool)
    assert got == want
    allowed = [
        dataclasses.replace(op, verdict=ANY) if isinstance(op, Record) else op
        for op in ops
        if not isinstance(op, Record) or _allowed(op)
    ]
    async with fresh_db() as dsn, asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await _seed_two(pool)
        await _run(PostgresSink(pool), pool, allowed, [len(allowed)])
        only_allowed = await dump_tables(pool)
    for table in OUTSIDE_QUARANTINE:
        assert got[table] == only_allowed[table], table
    # Every item its verdict refused is held, with its verdict.
    refused = {(q["kind"], q["verdict"]) for q in got["quarantine"] if q["kind"] != "problem"}
    assert all(kind in ("forged", "unverified") for kind, _ in refused)


def _allowed(record: Record) -> bool:
    org = organization_of(record)
    return org is None or record.verdict.allows(org)
