"""Batch preparation in the PostgreSQL sink: in steps, without changing the rows."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from wahook.sinks import postgres
from wahook.sinks.postgres import Item, TenantRouter, _prepare, _Prepared
from wahook.testing import PHONE_NUMBER_ID, notification, record, status, text_message


def _items(n: int) -> list[Item]:
    items = []
    for i in range(n):
        if i % 7 == 0:
            body = notification(messages=[text_message(f"wamid.IN{i}", f"hi {i}", 1750000000 + i)])
        else:
            extra = {"conversation": {"id": f"c{i % 3}", "origin": {"type": "marketing"}}}
            name = ("sent", "delivered", "read")[i % 3]
            body = notification(
                statuses=[status(f"wamid.OUT{i % 50}", name, 1750000000 + i, **extra)]
            )
        r = record(body, id=f"sqs-{i}")
        items.append(Item(r.id, r.received_at, r.events, r.problems))
    return items


def _router() -> TenantRouter:
    router = TenantRouter()
    router.by_phone = {PHONE_NUMBER_ID: 1}
    return router


def _rows(prep: _Prepared) -> tuple[object, ...]:
    return (prep.events, prep.statuses, prep.inbound, prep.quarantine, prep.routed)


async def test_preparation_in_steps_gives_the_rows_of_one_pass() -> None:
    items = _items(700)
    stepped = await _prepare(items, _router())
    assert _rows(stepped) == _rows(_Prepared(items, _router()))
    assert stepped.routed == 700
    assert len(stepped.statuses) == 50


async def test_preparation_lets_other_tasks_run_between_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    add = _Prepared.add

    def logged_add(self: _Prepared, items: object) -> None:
        log.append("add")
        add(self, items)  # type: ignore[arg-type]

    monkeypatch.setattr(_Prepared, "add", logged_add)
    done = False

    async def other_task() -> None:
        while not done:
            log.append("other")
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    items = _items(3 * postgres._PREPARE_STEP + 1)
    await _prepare(items, _router())
    done = True
    await task
    adds = [i for i, entry in enumerate(log) if entry == "add"]
    assert len(adds) == 4
    # Between any two steps, the other task got the loop.
    for first, second in itertools.pairwise(adds):
        assert "other" in log[first + 1 : second]
