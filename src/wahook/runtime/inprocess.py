"""An in-process source: the receiver hands bodies straight to the pipeline (``wahook serve``
with no queue configured).

>>> source = InProcessSource()
>>> done = await source.put(body)          # waits while the queue is full (backpressure)
>>> await done                              # optional: True once committed, False if not
>>> source.close()                          # no more bodies: the pipeline drains and ends

The pipeline (``Pipeline(source, sink).run(stop)``) reads it in batches. ``put`` may be
called before the pipeline starts; bodies wait in the bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Collection, Sequence
from types import TracebackType

from wahook.runtime.source import BaseSource, Message
from wahook.verdict import ANY, Verdict

_CLOSED = object()


class InProcessSource(BaseSource):
    """A bounded asyncio queue of bodies. Each ``put`` returns a future that resolves to
    True when the body's batch committed (stored or quarantined), False when it was not
    (the sink failed it, or the pipeline stopped before committing it)."""

    def __init__(self, maxsize: int = 10_000, *, batch_max: int = 500) -> None:
        self._queue: asyncio.Queue[tuple[Message, asyncio.Future[bool]] | object] = asyncio.Queue(
            maxsize
        )
        self._batch_max = batch_max
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[bool]] = {}
        self._closed = False
        self._ended = False

    def _message(
        self, body: bytes, id: str | None, received_at: float | None, verdict: Verdict
    ) -> Message:
        if self._closed:
            raise RuntimeError("InProcessSource is closed")
        return Message(
            id=id if id is not None else f"inproc-{next(self._ids)}",
            body=body,
            received_at=time.time() if received_at is None else received_at,
            verdict=verdict,
        )

    async def put(
        self,
        body: bytes,
        *,
        id: str | None = None,
        received_at: float | None = None,
        verdict: Verdict = ANY,
    ) -> asyncio.Future[bool]:
        """Queue one body, waiting while the queue is full. ``verdict``: whose items it may
        carry (the receiver passes its verdict; a body your program puts is its own to
        vouch for)."""
        message = self._message(body, id, received_at, verdict)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((message, done))
        return done

    def put_nowait(
        self,
        body: bytes,
        *,
        id: str | None = None,
        received_at: float | None = None,
        verdict: Verdict = ANY,
    ) -> asyncio.Future[bool]:
        """Queue one body or raise ``asyncio.QueueFull`` (answer 503/429 upstream)."""
        message = self._message(body, id, received_at, verdict)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((message, done))
        return done

    def close(self) -> None:
        """No more bodies: once the queue is drained, ``next_batch`` returns None."""
        if self._closed:
            return
        self._closed = True
        # Wakes a reader blocked on an empty queue; a full queue needs no wake-up, the
        # reader sees ``_closed`` once it has drained it.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSED)

    def qsize(self) -> int:
        return self._queue.qsize()

    async def next_batch(self) -> Sequence[Message] | None:
        if self._ended or (self._closed and self._queue.empty()):
            return None
        batch: list[Message] = []
        item = await self._queue.get()
        while True:
            if item is _CLOSED:
                self._ended = self._queue.empty()
                if self._ended or len(batch) >= self._batch_max:
                    break
                item = self._queue.get_nowait()
                continue
            assert isinstance(item, tuple)
            message, done = item
            self._pending[message.id] = done
            batch.append(message)
            if len(batch) >= self._batch_max or self._queue.empty():
                break
            item = self._queue.get_nowait()
        return batch or None

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        for message in batch:
            done = self._pending.pop(message.id, None)
            if done is not None and not done.done():
                done.set_result(message.id not in failed)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Handed out but never committed: tell whoever waits that it was not stored.
        for done in self._pending.values():
            if not done.done():
                done.set_result(False)
        self._pending.clear()
