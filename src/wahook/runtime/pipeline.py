"""The one pipeline: source → decode → batch (size or age) → sink → settle.

Tasks (one ``asyncio.TaskGroup``, every task named):

- ``wahook-reader-N``  ``source.next_batch()`` → decode each body → hand-off queue
- ``wahook-batcher``   groups records until ``batch_size`` events or ``batch_max_age`` seconds;
                       with several writers, one group per writer, a record going to the
                       writer of its wamid (``writer_of``)
- ``wahook-writer-N``  ``sink.write`` (transient failures retried with capped backoff) → settle
- ``wahook-<side>``    the source's side tasks (SQS visibility heartbeat); if one dies, the
                       group dies with it and every unsettled message is released
- ``wahook-control``   waits for the end of the input, a stop, or the deadline

Acknowledgement happens only in ``settle``, after the batch committed. Hand-offs are
bounded, so a slow sink stops the readers (and so the source) instead of growing memory.

Stop is two-phase: readers stop (no new receives; one under way gets ``READER_GRACE``
seconds to answer, then is cancelled), what was read is batched, written and settled
within ``grace`` seconds; then whatever is left is cancelled and the source releases it
when its context exits. ``run`` returns normally either way.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import zlib
from collections.abc import Sequence
from typing import Any

import structlog

from wahook.parse import DecodeError, MessageEvent, Problem, StatusEvent, decode
from wahook.runtime.failures import RetryPolicy, classify
from wahook.runtime.source import Message, Source
from wahook.runtime.stats import Fanout, Observer, Stats
from wahook.settings import Settings
from wahook.sinks.base import Record, Sink, WriteResult

log = structlog.get_logger("wahook.runtime")

_END = None
READER_GRACE = 1.0
"""Seconds a receive already under way may take to answer once a stop is asked."""
# Bodies decoded between two returns to the event loop (~0.5 ms): a source may hand over
# hundreds at once, and the writers' next statements should not wait for all of them.
_DECODE_STEP = 32
# Seconds a batch waits for its own writer before going to any writer with room: far
# longer than a transaction, so only a writer stalled (a long retry, a poison batch being
# bisected) gives up the locality of its wamids, and it holds the others up no longer.
_STALL = 1.0
_STALL_POLL = 0.005
Items = list[tuple[Message, Record]]


def writer_of(record: Record, writers: int) -> int:
    """Which of ``writers`` writers takes ``record``: by the wamid of its first status or
    message (else its id). Meta mostly sends one status per POST, so the statuses of one
    message go to one writer, in arrival order, and two writers' transactions rarely
    touch the same ``messages`` row, where the second would wait for the first to commit
    (with round-robin batches of shuffled statuses, ~24% of the second writer's time).
    A writer that stalls (a long retry) holds up the batcher, and so the others, for
    ``_STALL`` seconds at most once its one-batch queue is full: then its batches go to
    any writer with room (``Pipeline._hand_over``)."""
    if writers == 1:
        return 0
    key = record.id
    for ev in record.events:
        if ev.__class__ is StatusEvent:
            key = ev.status.id
            break
        if ev.__class__ is MessageEvent:
            key = ev.message.id
            break
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % writers


def to_record(message: Message, observer: Observer | None = None) -> Record:
    """Decode one body into a sink record. An undecodable body becomes a record with no
    events and one problem at ``$`` so the sink quarantines it (a permanent failure).

    No exception from one body may stop a reader: ``decode`` raises only ``DecodeError``
    by contract, and anything else it might raise is treated the same way (the body is
    quarantined whole, with the reason), so a decoder defect costs one body, not the
    worker."""
    try:
        notification = decode(message.body)
        events = list(notification.events())
    except Exception as exc:
        if isinstance(exc, DecodeError):
            reason = str(exc)
            log.warning("body_undecodable", message_id=message.id, reason=exc.reason)
        else:
            reason = f"the decoder failed on this body: {type(exc).__name__}: {exc}"
            log.error("decoder_failed", message_id=message.id, error=repr(exc)[:300])
        record = Record(
            id=message.id,
            events=(),
            problems=(Problem(path="$", reason=reason, raw=message.body),),
            raw=message.body,
            received_at=message.received_at,
            verdict=message.verdict,
        )
        if observer is not None:
            observer.decoded(record, None)
        return record
    record = Record(
        id=message.id,
        events=events,
        problems=notification.problems,
        raw=message.body,
        received_at=message.received_at,
        verdict=message.verdict,
    )
    if observer is not None:
        observer.decoded(record, notification.unknown())
    return record


class Pipeline:
    def __init__(
        self,
        source: Source,
        sink: Sink,
        *,
        batch_size: int = 1000,
        batch_max_age: float = 0.2,
        grace: float = 20.0,
        writers: int = 1,
        retry: RetryPolicy | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.source = source
        self.sink = sink
        self.batch_size = batch_size
        self.batch_max_age = batch_max_age
        self.grace = grace
        self.writers = writers
        self.retry = retry or RetryPolicy()
        self.stats = Stats()
        self._observe = Fanout(self.stats, *observers)
        self._batch_ids = itertools.count(1)

    @classmethod
    def from_settings(
        cls, source: Source, sink: Sink, settings: Settings, observers: Sequence[Observer] = ()
    ) -> Pipeline:
        """A pipeline with the batching, grace and writers of ``settings``."""
        return cls(
            source,
            sink,
            batch_size=settings.batch_size,
            batch_max_age=settings.batch_max_age,
            grace=settings.grace_seconds,
            writers=settings.writers,
            observers=observers,
        )

    # --- run --------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event | None = None, *, deadline: float | None = None
    ) -> Stats:
        """Process until the source is exhausted, ``stop`` is set (two-phase stop), or the
        loop clock passes ``deadline`` (everything unsettled is released at once)."""
        stop = stop if stop is not None else asyncio.Event()
        self._records: asyncio.Queue[Items | None] = asyncio.Queue(max(2, self.source.concurrency))
        self._batches: list[asyncio.Queue[Items | None]] = [
            asyncio.Queue(1) for _ in range(self.writers)
        ]
        self._readers_left = self.source.concurrency
        self._end_sent = False
        self._stopping = False
        try:
            async with self.source, asyncio.TaskGroup() as tg:
                readers = [
                    tg.create_task(self._read(), name=f"wahook-reader-{i}")
                    for i in range(self.source.concurrency)
                ]
                work = [tg.create_task(self._batch(), name="wahook-batcher")]
                work += [
                    tg.create_task(self._write(self._batches[i]), name=f"wahook-writer-{i}")
                    for i in range(self.writers)
                ]
                sides = [
                    tg.create_task(coro, name=f"wahook-{name}")
                    for name, coro in self.source.side_tasks().items()
                ]
                tg.create_task(
                    self._control(stop, deadline, readers, work, sides), name="wahook-control"
                )
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return self.stats

    async def _control(
        self,
        stop: asyncio.Event,
        deadline: float | None,
        readers: list[asyncio.Task[None]],
        work: list[asyncio.Task[None]],
        sides: list[asyncio.Task[None]],
    ) -> None:
        finished = asyncio.create_task(asyncio.wait(work), name="wahook-control-finished")
        stopped = asyncio.create_task(stop.wait(), name="wahook-control-stop")
        try:
            timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait(
                {finished, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                unsettled = sum(q.qsize() for q in self._batches)
                log.warning("pipeline_deadline", unsettled_batches=unsettled)
            elif finished not in done:
                log.info("pipeline_stopping", grace=self.grace)
                # No new receives; one already answering may finish (what it took is then
                # written or released, not stranded until its visibility timeout), one
                # still waiting on an empty queue is cancelled.
                self._stopping = True
                _, waiting = await asyncio.wait(readers, timeout=min(READER_GRACE, self.grace))
                for task in waiting:
                    task.cancel()
                await asyncio.wait(readers)
                grace = self.grace
                if deadline is not None:
                    grace = min(grace, deadline - asyncio.get_running_loop().time())
                try:
                    async with asyncio.timeout(max(0.0, grace)):
                        await self._send_end()
                        await asyncio.wait(work)
                except TimeoutError:
                    log.warning("pipeline_grace_expired", grace=self.grace)
        finally:
            finished.cancel()
            stopped.cancel()
            for task in (*readers, *work, *sides):
                task.cancel()

    # --- tasks ------------------------------------------------------------------------

    async def _send_end(self) -> None:
        if not self._end_sent:
            self._end_sent = True
            await self._records.put(_END)

    async def _read(self) -> None:
        while not self._stopping and (messages := await self.source.next_batch()) is not None:
            if messages:
                items = [(m, to_record(m, self._observe)) for m in messages[:_DECODE_STEP]]
                for start in range(_DECODE_STEP, len(messages), _DECODE_STEP):
                    await asyncio.sleep(0)
                    items += [(m, to_record(m, self._observe))
                              for m in messages[start : start + _DECODE_STEP]]  # fmt: skip
                await self._records.put(items)
        self._readers_left -= 1
        if self._readers_left == 0:
            await self._send_end()

    async def _batch(self) -> None:
        """One group per writer (records split by ``writer_of``), each handed to its
        writer at ``batch_size`` events or ``batch_max_age`` seconds after its first."""
        loop = asyncio.get_running_loop()
        n = self.writers
        pending: list[Items] = [[] for _ in range(n)]
        weight = [0] * n
        flush_at = [0.0] * n
        ended = False
        while not ended:
            due = [flush_at[k] for k in range(n) if pending[k]]
            try:
                async with asyncio.timeout_at(min(due) if due else None):
                    items = await self._records.get()
            except TimeoutError:
                items = []
            if items is _END:
                ended = True
            elif items:
                now = loop.time()
                for item in items:
                    record = item[1]
                    k = writer_of(record, n)
                    if not pending[k]:
                        flush_at[k] = now + self.batch_max_age
                    pending[k].append(item)
                    weight[k] += max(1, len(record.events) + len(record.problems))
            for k in range(n):
                if pending[k] and (
                    ended or weight[k] >= self.batch_size or loop.time() >= flush_at[k]
                ):
                    await self._hand_over(k, pending[k])
                    pending[k], weight[k] = [], 0
        for queue in self._batches:
            await queue.put(_END)

    async def _hand_over(self, k: int, batch: Items) -> None:
        """Give ``batch`` to writer ``k``; if its queue stays full for ``_STALL`` seconds,
        to the first writer with room. By wamid is for speed only (the sink is
        order-independent and safe under concurrency), so a stalled writer costs the
        others a second at most, not its whole stall."""
        queue = self._batches[k]
        if not queue.full() or len(self._batches) == 1:
            await queue.put(batch)
            return
        try:
            async with asyncio.timeout(_STALL):
                await queue.put(batch)
            return
        except TimeoutError:
            pass
        log.warning("writer_stalled", writer=k, stall=_STALL)
        while True:  # rare: poll for a queue with room, the stalled writer's first
            for q in (queue, *self._batches):
                if not q.full():
                    q.put_nowait(batch)
                    return
            await asyncio.sleep(_STALL_POLL)

    async def _write(self, batches: asyncio.Queue[Items | None]) -> None:
        while (items := await batches.get()) is not _END:
            batch_id = next(self._batch_ids)
            bound = log.bind(batch_id=batch_id)
            records = [record for _, record in items]
            result = await self._commit(records, bound)
            try:
                await self.source.settle([m for m, _ in items], result.failed)
            except Exception as exc:
                # Not acknowledged means redelivered; the sink is idempotent.
                bound.warning("settle_failed", error=repr(exc), messages=len(items))

    async def _commit(self, records: list[Record], bound: Any) -> WriteResult:
        """Write until every record is committed or failed for good. Transient failures
        (raised, or reported by the sink as ``transient``) are retried for the records
        concerned only, with capped backoff, until the retry policy gives up."""
        total = WriteResult()
        pending = records
        first = time.monotonic()
        attempt = 0
        while True:
            failure: str | None = None
            try:
                result = await self.sink.write(pending)
            except Exception as exc:
                failure = classify(exc)
                reason = f"{failure}: {exc!r}"
                result = WriteResult(failed=dict.fromkeys((r.id for r in pending), reason))
            else:
                if result.transient and result.failed:
                    failure = "transient"
            total.applied += result.applied
            total.quarantined += result.quarantined
            total.duplicates += result.duplicates
            total.poisoned.update(result.poisoned)
            if failure == "transient" and not self.retry.exhausted(
                attempt, time.monotonic() - first
            ):
                pending = [r for r in pending if r.id in result.failed]
                delay = self.retry.delay(attempt, random.random())
                bound.warning(
                    "sink_retry",
                    attempt=attempt + 1,
                    records=len(pending),
                    delay=round(delay, 3),
                    error=next(iter(result.failed.values())),
                )
                self._observe.retried(failure)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            total.failed = result.failed
            total.transient = result.transient or failure == "transient"
            seconds = time.monotonic() - first
            if failure is not None:
                bound.error(
                    "batch_failed",
                    failure=failure,
                    records=len(result.failed),
                    error=next(iter(result.failed.values())),
                )
                self._observe.gave_up(failure, len(result.failed))
            elif result.failed:
                bound.warning("records_failed", failed=sorted(result.failed)[:20])
                self._observe.gave_up("permanent", len(result.failed))
            for message_id, reason in total.poisoned.items():
                record = next(r for r in records if r.id == message_id)
                wamids = sorted({w for e in record.events if (w := e.wamid)})[:10]
                bound.warning(
                    "record_poisoned", message_id=message_id, reason=reason, wamids=wamids
                )
            self._observe.committed(records, total, seconds)
            bound.debug(
                "batch_committed",
                records=len(records),
                applied=total.applied,
                quarantined=total.quarantined,
                failed=len(total.failed),
                seconds=round(seconds, 4),
            )
            return total
