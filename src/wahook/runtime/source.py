"""The source contract: where raw webhook bodies come from, and how they are acknowledged.

A source is an async context manager. Inside it the pipeline calls ``next_batch()`` (from
``concurrency`` readers at once) until it returns ``None``, and ``settle(batch, failed)``
once a batch has committed. Leaving the context *releases* every message that was handed
out and not settled (SQS: visibility back to 0; Lambda: reported as failed), so a stop at
any moment loses nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, Self

from wahook.verdict import ANY, Verdict

_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One raw body as a source delivered it. ``id`` is unique within a run (SQS message id,
    ``file:line``, ...); ``received_at`` is when the source first got it (epoch seconds);
    ``group`` is the FIFO message group, if any. ``verdict`` says whose items the body may
    carry (``wahook.verdict``): sources of untrusted bodies set it from what the receiver
    decided (SQS attribute, in-process hand-off) or from the operator (replay); a body
    handed over by the program itself is its own to vouch for (``ANY``)."""

    id: str
    body: bytes
    received_at: float | None = None
    group: str | None = None
    attributes: Mapping[str, str] = dataclasses.field(default_factory=lambda: _NO_ATTRIBUTES)
    verdict: Verdict = ANY


class Source(Protocol):
    """What the pipeline needs from a source (STYLE.md 4)."""

    @property
    def concurrency(self) -> int:
        """How many ``next_batch()`` calls may be outstanding at once."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def next_batch(self) -> Sequence[Message] | None:
        """The next messages (waiting for them if need be), or ``None`` when there will be
        no more. Cancelling it must be prompt and must lose nothing."""
        ...

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        """Acknowledge every message of ``batch`` whose id is not in ``failed``; the failed
        ones go back to the source (redelivered later, eventually dead-lettered)."""
        ...

    def side_tasks(self) -> Mapping[str, Coroutine[Any, Any, None]]:
        """Background work the pipeline runs (and watches) while the source is open."""
        ...


class BaseSource:
    """Defaults for the optional parts of ``Source``, and ``async for batch in source``."""

    concurrency: int = 1

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def next_batch(self) -> Sequence[Message] | None:
        raise NotImplementedError

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        return None

    def side_tasks(self) -> Mapping[str, Coroutine[Any, Any, None]]:
        return {}

    async def __aiter__(self) -> AsyncIterator[Sequence[Message]]:
        while (batch := await self.next_batch()) is not None:
            yield batch
