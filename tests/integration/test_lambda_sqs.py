"""The Lambda SQS handler against real PostgreSQL: a realistic event with a poison record,
warm invocations on one pool, and a database that is down."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.plugins.sqs import _free_port
from tests.unit.test_runtime_lambda import Context, failures, sqs_event
from wahook.runtime.lambda_sqs import LambdaHandler, make_handler
from wahook.settings import Settings
from wahook.sinks.postgres import add_organization
from wahook.testing import (
    TRAFFIC_PHONE_NUMBER_ID,
    TRAFFIC_WABA_ID,
    traffic_events,
    webhook_traffic,
)

POISON = b"\x00 not a webhook"


async def _query(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def query(dsn: str, sql: str) -> Any:
    return asyncio.run(_query(dsn, sql))


@pytest.fixture
def tenant_dsn(db_dsn: str) -> str:
    async def add() -> None:
        conn = await asyncpg.connect(db_dsn)
        try:
            await add_organization(
                conn, name="Acme", phone_number_id=TRAFFIC_PHONE_NUMBER_ID, waba_id=TRAFFIC_WABA_ID
            )
        finally:
            await conn.close()

    asyncio.run(add())
    return db_dsn


@pytest.fixture
def handlers() -> Iterator[list[LambdaHandler]]:
    made: list[LambdaHandler] = []
    yield made
    for h in made:
        h.close()


def test_records_stored_poison_quarantined_nothing_reported(
    tenant_dsn: str, handlers: list[LambdaHandler]
) -> None:
    metrics = io.StringIO()
    h = make_handler(Settings(dsn=tenant_dsn), metrics_stream=metrics)
    handlers.append(h)
    bodies = list(webhook_traffic(20))
    result = h(sqs_event([*bodies[:5], POISON, *bodies[5:]]), Context())
    assert failures(result) == []
    assert query(tenant_dsn, "SELECT count(*) FROM webhook_events") == traffic_events(20)
    assert query(tenant_dsn, "SELECT raw FROM quarantine") == POISON
    emf = json.loads(metrics.getvalue().splitlines()[-1])
    assert (emf["Records"], emf["Events"], emf["BatchItemFailures"]) == (21, 105, 0)


def test_warm_invocations_reuse_one_pool(tenant_dsn: str, handlers: list[LambdaHandler]) -> None:
    h = make_handler(Settings(dsn=tenant_dsn), metrics_stream=io.StringIO())
    handlers.append(h)
    h(sqs_event(list(webhook_traffic(10))), Context())
    sink, loop = h.sink, h.loop
    pool = getattr(sink, "pool", None)
    assert pool is not None
    result = h(sqs_event(list(webhook_traffic(10, start=10))), Context())
    assert failures(result) == []
    assert (h.sink, h.loop, getattr(h.sink, "pool", None)) == (sink, loop, pool)
    assert query(tenant_dsn, "SELECT count(*) FROM webhook_events") == traffic_events(20)


def test_database_down_reports_every_record(handlers: list[LambdaHandler]) -> None:
    down = f"postgresql://postgres@127.0.0.1:{_free_port()}/whatsapp_db"  # nobody listens
    h = make_handler(Settings(dsn=down), metrics_stream=io.StringIO(), retry_for=0.2)
    handlers.append(h)
    event = sqs_event(list(webhook_traffic(4)))
    assert failures(h(event, Context())) == [f"id-{i}" for i in range(4)]


def test_module_handler_reads_settings_from_the_environment(
    tenant_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wahook.runtime import lambda_sqs

    monkeypatch.setenv("WAHOOK_DSN", tenant_dsn)
    monkeypatch.setattr(lambda_sqs, "_default", None)
    try:
        assert lambda_sqs.handler(sqs_event(list(webhook_traffic(3))), Context()) == {
            "batchItemFailures": []
        }
        first = lambda_sqs._default
        lambda_sqs.handler(sqs_event(list(webhook_traffic(3, start=3))), Context())
        assert lambda_sqs._default is first
    finally:
        if lambda_sqs._default is not None:
            lambda_sqs._default.close()
        import structlog

        structlog.reset_defaults()
    out = capsys.readouterr().out
    assert '"CloudWatchMetrics"' in out
    assert query(tenant_dsn, "SELECT count(*) FROM webhook_events") == traffic_events(6)
