"""The pipeline against the sink contract, with a fake sink and the in-process source."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Coroutine, Mapping, Sequence
from typing import Any

import pytest

from wahook.errors import TransientError
from wahook.runtime import pipeline
from wahook.runtime.failures import RetryPolicy, classify
from wahook.runtime.inprocess import InProcessSource
from wahook.runtime.pipeline import Pipeline, to_record, writer_of
from wahook.runtime.source import BaseSource, Message
from wahook.sinks.base import Record, WriteResult


def body(i: int, statuses: int = 1) -> bytes:
    items = [
        {
            "id": f"wamid.out{i}.{k}",
            "status": "delivered",
            "timestamp": "1700000000",
            "recipient_id": "15550001111",
        }
        for k in range(statuses)
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "111"},
        "statuses": items,
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "222", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(doc).encode()


class FakeSink:
    """Records every write; can fail transiently, fail ids, or block."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.committed: list[str] = []
        self.transient_failures = 0
        self.fail_ids: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientError("connection refused")
        ids = [r.id for r in batch]
        self.writes.append(ids)
        failed = {i: "poison" for i in ids if i in self.fail_ids}
        self.committed += [i for i in ids if i not in failed]
        return WriteResult(failed=failed, applied=sum(len(r.events) for r in batch))


class ListSource(BaseSource):
    """A finite source that records settlements and what was left unsettled at exit."""

    def __init__(self, bodies: Sequence[bytes], per_batch: int = 10) -> None:
        self.messages = [Message(id=f"m{i}", body=b) for i, b in enumerate(bodies)]
        self.per_batch = per_batch
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.handed: set[str] = set()
        self.released: set[str] = set()
        self.extra: dict[str, Coroutine[Any, Any, None]] = {}
        self._pos = 0

    async def next_batch(self) -> Sequence[Message] | None:
        if self._pos >= len(self.messages):
            return None
        batch = self.messages[self._pos : self._pos + self.per_batch]
        self._pos += self.per_batch
        self.handed.update(m.id for m in batch)
        return batch

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        for m in batch:
            (self.nacked if m.id in failed else self.acked).append(m.id)
            self.handed.discard(m.id)

    def side_tasks(self) -> Mapping[str, Coroutine[Any, Any, None]]:
        return self.extra

    async def __aexit__(self, *exc: object) -> None:
        self.released = set(self.handed)


async def test_every_message_committed_then_acked_once() -> None:
    source, sink = ListSource([body(i, statuses=3) for i in range(95)]), FakeSink()
    stats = await Pipeline(source, sink, batch_size=30, batch_max_age=5).run()
    assert sorted(source.acked) == sorted(m.id for m in source.messages)
    assert len(set(source.acked)) == 95
    assert sorted(sink.committed) == sorted(source.acked)
    assert stats.events == 95 * 3
    assert max(len(w) for w in sink.writes) <= 10  # 10 bodies x 3 events = 30
    assert not source.released


async def test_undecodable_body_becomes_one_problem_at_root() -> None:
    record = to_record(Message(id="x", body=b"{not json"))
    assert record.events == ()
    assert [p.path for p in record.problems] == ["$"]
    assert record.problems[0].raw == b"{not json"
    assert record.raw == b"{not json"


async def test_transient_failures_are_retried_before_any_ack() -> None:
    source, sink = ListSource([body(i) for i in range(5)]), FakeSink()
    sink.transient_failures = 3
    pipeline = Pipeline(source, sink, retry=RetryPolicy(first=0.001, cap=0.002))
    stats = await pipeline.run()
    assert stats.retries == 3
    assert sorted(source.acked) == [f"m{i}" for i in range(5)]


async def test_transient_failures_give_up_without_ack() -> None:
    source, sink = ListSource([body(i) for i in range(5)]), FakeSink()
    sink.transient_failures = 10**6
    retry = RetryPolicy(first=0.001, cap=0.002, give_up_after=0.05)
    stats = await Pipeline(source, sink, retry=retry).run()
    assert source.acked == []
    assert sorted(source.nacked) == [f"m{i}" for i in range(5)]
    assert stats.failures["transient"] == 5


async def test_records_the_sink_failed_are_not_acked() -> None:
    source, sink = ListSource([body(i) for i in range(4)]), FakeSink()
    sink.fail_ids = {"m2"}
    await Pipeline(source, sink).run()
    assert source.nacked == ["m2"]
    assert sorted(source.acked) == ["m0", "m1", "m3"]


async def test_stop_finishes_in_flight_within_grace() -> None:
    source = InProcessSource()
    sink = FakeSink()
    sink.gate = asyncio.Event()
    futures = [await source.put(body(i)) for i in range(3)]
    stop = asyncio.Event()
    run = asyncio.create_task(Pipeline(source, sink, batch_max_age=0.01, grace=30).run(stop))
    await sink.entered.wait()
    stop.set()
    await asyncio.sleep(0.01)
    sink.gate.set()
    await run
    assert [await f for f in futures] == [True, True, True]


async def test_stop_releases_what_cannot_finish_in_grace() -> None:
    source, sink = ListSource([body(i) for i in range(3)]), FakeSink()
    sink.gate = asyncio.Event()  # never opens
    stop = asyncio.Event()
    run = asyncio.create_task(Pipeline(source, sink, batch_max_age=0.01, grace=0.05).run(stop))
    await sink.entered.wait()
    stop.set()
    await run
    assert source.acked == []
    assert source.released == {"m0", "m1", "m2"}


async def test_deadline_releases_everything_unsettled() -> None:
    source, sink = ListSource([body(i) for i in range(3)]), FakeSink()
    sink.gate = asyncio.Event()
    deadline = asyncio.get_running_loop().time() + 0.05
    await Pipeline(source, sink, batch_max_age=0.01).run(deadline=deadline)
    assert source.released == {"m0", "m1", "m2"}


async def test_a_dying_side_task_stops_the_pipeline() -> None:
    async def heartbeat() -> None:
        raise RuntimeError("heartbeat broke")

    source, sink = InProcessSource(), FakeSink()
    source_with_side = ListSource([])
    source_with_side.extra = {"heartbeat": heartbeat()}
    with pytest.raises(RuntimeError, match="heartbeat broke"):
        await Pipeline(source_with_side, sink).run()
    del source


async def test_inprocess_source_drains_then_ends_on_close() -> None:
    source, sink = InProcessSource(maxsize=5), FakeSink()
    run = asyncio.create_task(Pipeline(source, sink, batch_max_age=0.01).run())
    futures = [await source.put(body(i)) for i in range(20)]
    source.close()
    stats = await run
    assert all([await f for f in futures])
    assert stats.messages == 20


def test_failure_classes() -> None:
    assert classify(TransientError("x")) == "transient"
    assert classify(ConnectionRefusedError()) == "transient"
    assert classify(TimeoutError()) == "transient"
    assert classify(ValueError("bug")) == "permanent"

    class Deadlock(Exception):
        sqlstate = "40P01"

    assert classify(Deadlock()) == "transient"


class SlowReceiveSource(ListSource):
    """Every receive takes ``delay`` seconds (a long poll); ``started`` is set when the
    first one begins."""

    def __init__(self, bodies: Sequence[bytes], delay: float) -> None:
        super().__init__(bodies)
        self.delay = delay
        self.started = asyncio.Event()

    async def next_batch(self) -> Sequence[Message] | None:
        self.started.set()
        await asyncio.sleep(self.delay)
        return await super().next_batch()


async def test_stop_lets_a_receive_under_way_answer_and_writes_what_it_took() -> None:
    source, sink = SlowReceiveSource([body(i) for i in range(25)], delay=0.1), FakeSink()
    stop = asyncio.Event()
    run = asyncio.create_task(Pipeline(source, sink, batch_max_age=0.01).run(stop))
    await source.started.wait()
    stop.set()
    await run
    assert source.acked == [f"m{i}" for i in range(10)]  # the one batch under way
    assert source.released == set()


async def test_stop_cancels_a_receive_that_keeps_waiting() -> None:
    source, sink = SlowReceiveSource([body(0)], delay=3600), FakeSink()
    stop = asyncio.Event()
    run = asyncio.create_task(Pipeline(source, sink).run(stop))
    await source.started.wait()
    stop.set()
    stats = await run
    assert stats.messages == 0
    assert source.acked == []


async def test_log_events_name_what_happened() -> None:
    from structlog.testing import capture_logs

    class Poisoning(FakeSink):
        async def write(self, batch: Sequence[Record]) -> WriteResult:
            result = await super().write(batch)
            result.poisoned = {"m1": "check_violation"}
            return result

    source, sink = ListSource([body(0), b"not json", body(2)]), Poisoning()
    sink.transient_failures = 1
    with capture_logs() as logs:
        await Pipeline(source, sink, retry=RetryPolicy(first=0.001, cap=0.001)).run()
    by_name = {e["event"]: e for e in logs}
    assert by_name["body_undecodable"]["message_id"] == "m1"
    assert by_name["sink_retry"]["batch_id"] == 1
    assert by_name["sink_retry"]["error"].startswith("transient")
    assert by_name["record_poisoned"]["message_id"] == "m1"
    assert by_name["batch_committed"]["records"] == 3


async def test_a_large_receive_is_decoded_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of bodies handed over at once are decoded a few dozen at a time, with the
    event loop's other tasks (the writers' next statements) run in between."""
    from wahook.runtime import pipeline

    log: list[str] = []

    def logged(message: Message, observe: Any) -> Record:
        log.append("decode")
        return to_record(message, observe)

    monkeypatch.setattr(pipeline, "to_record", logged)
    source, sink = (
        ListSource([body(i) for i in range(5 * pipeline._DECODE_STEP)], per_batch=1000),
        FakeSink(),
    )
    done = False

    async def other_task() -> None:
        while not done:
            log.append("other")
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await Pipeline(source, sink, batch_size=10_000, batch_max_age=5).run()
    done = True
    await other
    assert log.count("decode") == 5 * pipeline._DECODE_STEP
    runs = "".join("d" if entry == "decode" else "o" for entry in log).split("o")
    assert max(len(run) for run in runs) == pipeline._DECODE_STEP
    assert sorted(source.acked) == sorted(m.id for m in source.messages)


def status_body(wamid: str, status: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "111"},
        "statuses": [
            {"id": wamid, "status": status, "timestamp": "1700000000", "recipient_id": "1555"}
        ],
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "222", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(doc).encode()


async def test_several_writers_each_take_the_messages_of_their_wamids() -> None:
    """With several writers, every status of one message goes to the same writer (so two
    writers' transactions do not wait on each other's rows), the writers share the work,
    and everything is still committed and acknowledged once."""
    wamids = [f"wamid.w{i}" for i in range(60)]
    bodies = [status_body(w, s) for s in ("sent", "delivered", "read") for w in wamids]
    bodies.append(b"not json")  # no wamid: goes by its id
    writer_of_wamid: dict[str, set[str]] = {}

    class TaskSink(FakeSink):
        async def write(self, batch: Sequence[Record]) -> WriteResult:
            task = asyncio.current_task()
            assert task is not None
            for r in batch:
                for ev in r.events:
                    writer_of_wamid.setdefault(ev.status.id, set()).add(task.get_name())  # type: ignore[union-attr]
            await asyncio.sleep(0.001)
            return await super().write(batch)

    source, sink = ListSource(bodies, per_batch=25), TaskSink()
    stats = await Pipeline(source, sink, batch_size=20, batch_max_age=5, writers=3).run()
    assert all(len(names) == 1 for names in writer_of_wamid.values())
    used = set().union(*writer_of_wamid.values())
    assert used == {"wahook-writer-0", "wahook-writer-1", "wahook-writer-2"}
    assert sorted(source.acked) == sorted(m.id for m in source.messages)
    assert len(set(source.acked)) == len(bodies)
    assert stats.events == 180


async def test_a_stalled_writer_hands_its_batches_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One writer's batch is stuck in the sink (a long retry, a bisection): once its queue
    has been full for ``_STALL`` seconds, its next batches go to the other writer, so
    everything else is committed and acknowledged while the stuck batch waits."""
    monkeypatch.setattr(pipeline, "_STALL", 0.05)
    wamids = [f"wamid.s{i}" for i in range(40)]
    by_writer = {
        k: [w for w in wamids if writer_of(to_record(Message("x", status_body(w, "sent"))), 2) == k]
        for k in (0, 1)
    }
    stuck_wamid = by_writer[0][0]
    bodies = [status_body(stuck_wamid, s) for s in ("sent", "delivered", "read", "played")]
    bodies += [status_body(w, s) for s in ("sent", "delivered") for w in by_writer[0][1:]]
    bodies += [status_body(w, "sent") for w in by_writer[1]]
    release = asyncio.Event()
    stuck: list[str] = []

    class StuckSink(FakeSink):
        async def write(self, batch: Sequence[Record]) -> WriteResult:
            if not stuck:  # the very first batch written stays in the sink until released
                stuck.extend(r.id for r in batch)
                await release.wait()
            return await super().write(batch)

    source, sink = ListSource(bodies, per_batch=2), StuckSink()
    run = asyncio.create_task(
        Pipeline(source, sink, batch_size=2, batch_max_age=5, writers=2).run()
    )
    # Waiting for the writer: its stuck batch (m0, m1) and the one queued behind it (m2,
    # m3, the same message's other statuses); every later batch went elsewhere.
    behind = {"m0", "m1", "m2", "m3"}
    everyone_else = {m.id for m in source.messages} - behind
    for _ in range(500):
        if everyone_else <= set(source.acked):
            break
        await asyncio.sleep(0.01)
    assert stuck == ["m0", "m1"]
    assert everyone_else <= set(source.acked)  # all committed while the first batch waits
    assert not behind & set(source.acked)
    release.set()
    await run
    assert sorted(source.acked) == sorted(m.id for m in source.messages)
    assert len(set(source.acked)) == len(bodies)
