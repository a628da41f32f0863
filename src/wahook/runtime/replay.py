"""``wahook replay``: bodies from files, directories, JSONL or stdin through the pipeline,
with a progress bar and a summary of what was stored and quarantined.

Replay is an operator's action and says whose data it loads (``wahook.verdict``): files
carry no signature, so the operator names the organization (``--organization N``; items of
any other are quarantined as forged) or vouches for all (``--any-organization``). Dead-letter
messages keep the verdict their receiver gave them; the operator's word only fills in for
messages (and quarantined items) that arrived without one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TextIO

from wahook.runtime.source import Message, Source
from wahook.settings import Settings
from wahook.sinks.base import Record, Sink, WriteResult
from wahook.verdict import Verdict

if TYPE_CHECKING:
    from wahook.sinks.postgres import TenantRouter


class DryRunSink:
    """Counts what would be written, writing nothing. With a ``router`` (organizations read
    from the database), an event counts as applied only when it routes to an organization
    its verdict allows, else as quarantined; without one nothing can be said to apply, so
    only problems are counted (as quarantined)."""

    def __init__(self, router: TenantRouter | None = None) -> None:
        self.router = router

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        result = WriteResult(quarantined=sum(len(r.problems) for r in batch))
        if self.router is None:
            return result
        for r in batch:
            allowed = r.verdict.allowed
            for ev in r.events:
                org = self.router.route(ev.phone_number_id, ev.waba_id, allowed)
                if org is not None and r.verdict.allows(org):
                    result.applied += 1
                else:
                    result.quarantined += 1
        return result


@contextlib.asynccontextmanager
async def _dry_run_sink(settings: Settings) -> AsyncIterator[DryRunSink]:
    if not settings.dsn:
        yield DryRunSink()
        return
    from wahook.runtime.resources import create_pool
    from wahook.sinks.postgres import TenantRouter

    pool = await create_pool(settings)
    try:
        router = TenantRouter()
        async with pool.acquire() as conn:
            await router.refresh(conn)
        yield DryRunSink(router)
    finally:
        await pool.close()


class Vouched:
    """A source whose messages get the operator's ``verdict``: all of them (files, which
    carry none), or with ``only_unverified`` those that arrived without one (dead letters
    queued before verdicts existed)."""

    def __init__(self, source: Source, verdict: Verdict, *, only_unverified: bool) -> None:
        self.source = source
        self.verdict = verdict
        self.only_unverified = only_unverified

    @property
    def concurrency(self) -> int:
        return self.source.concurrency

    def __getattr__(self, name: str) -> Any:  # progress counters of the wrapped source
        return getattr(self.source, name)

    async def __aenter__(self) -> Self:
        await self.source.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.source.__aexit__(exc_type, exc, tb)

    async def next_batch(self) -> Sequence[Message] | None:
        batch = await self.source.next_batch()
        if batch is None:
            return None
        return [
            m if self.only_unverified and not m.verdict.unverified
            else dataclasses.replace(m, verdict=self.verdict)
            for m in batch
        ]  # fmt: skip

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        await self.source.settle(batch, failed)

    def side_tasks(self) -> Mapping[str, Coroutine[Any, Any, None]]:
        return self.source.side_tasks()


async def run_replay(
    settings: Settings,
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    progress: bool = False,
    out: TextIO | None = None,
    dead_letter_queue: str | None = None,
    quarantine: bool = False,
    verdict: Verdict | None = None,
) -> int:
    """Replay ``paths`` (or drain ``dead_letter_queue``), then, with ``quarantine``, apply
    the quarantined items whose organization exists now. ``verdict`` is the operator's word
    on whose data it is: required for ``paths``; for dead letters and quarantined items it
    applies to those that arrived without a verdict. Returns the exit status."""
    if paths and verdict is None:
        raise ValueError("replaying files needs a verdict (--organization N / --any-organization)")
    from wahook.runtime.files import FileSource
    from wahook.runtime.resources import postgres_sink
    from wahook.runtime.signals import stop_on_signals
    from wahook.runtime.sqs_poll import SqsSource

    out = out or sys.stdout
    source: Source | None = None
    if dead_letter_queue:
        source = SqsSource(
            dead_letter_queue,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            receivers=settings.sqs_receivers,
            wait_seconds=1,
            drain=True,
        )
        if verdict is not None:
            source = Vouched(source, verdict, only_unverified=True)
    elif paths:
        assert verdict is not None
        source = Vouched(FileSource(paths), verdict, only_unverified=False)
    stop = asyncio.Event()
    status = 0
    with stop_on_signals(stop):
        async with _dry_run_sink(settings) if dry_run else postgres_sink(settings) as sink:
            if source is not None:
                status = await _replay_source(source, sink, settings, stop, dry_run, progress, out)
            if quarantine and not stop.is_set():
                done = await sink.replay_quarantine(unverified=verdict)  # type: ignore[attr-defined]
                print(
                    f"quarantine: {done.applied} items applied, {done.still_unrouted} still "
                    f"without an organization, {done.refused} not allowed by their verdict, "
                    f"{done.unverified} without a verdict (give --organization N or "
                    f"--any-organization to apply them), {done.undecodable} undecodable",
                    file=out,
                )
    if stop.is_set():
        print("replay: interrupted; run it again to finish (it is idempotent)", file=out)
        return 1
    return status


async def _replay_source(
    source: Any,
    sink: Sink,
    settings: Settings,
    stop: asyncio.Event,
    dry_run: bool,
    progress: bool,
    out: TextIO,
) -> int:
    from wahook.runtime.pipeline import Pipeline

    pipeline = Pipeline.from_settings(source, sink, settings)
    bar = asyncio.create_task(_bar(pipeline, source, progress), name="wahook-progress")
    try:
        stats = await pipeline.run(stop)
    finally:
        bar.cancel()
    if progress:
        print(file=sys.stderr)
    verb = "would store" if dry_run else "stored"
    summary = stats.summary()
    failed: list[str] = getattr(source, "failed", [])
    if dry_run and getattr(sink, "router", True) is None:
        stored = (
            f"{verb}: unknown without a database (give --dsn to see which organizations "
            f"they belong to), {summary['quarantined']} quarantined "
            f"({summary['undecodable']} undecodable bodies)"
        )
    else:
        stored = (
            f"{verb}: {summary['applied']} applied, {summary['quarantined']} quarantined "
            f"({summary['undecodable']} undecodable bodies), {summary['duplicates']} duplicates"
        )
    print(
        f"replay: {summary['messages']} bodies, {summary['events']} events; {stored}; "
        f"not stored: {stats.failed}; {summary['events_per_second']} events/s",
        file=out,
    )
    for message_id in failed[:50]:
        print(f"  not stored: {message_id}", file=out)
    if summary["messages"] and summary["undecodable"] == summary["messages"]:
        print("replay: no body was a WhatsApp notification (all quarantined)", file=out)
        return 1
    return 1 if stats.failed else 0


async def _bar(pipeline: Any, source: Any, show: bool) -> None:
    if not show:
        return
    stats = pipeline.stats
    while True:
        total = getattr(source, "total_bytes", 0)
        read = getattr(source, "read_bytes", 0)
        done = min(read, total) if total else read
        share = f"{100 * done / total:5.1f}% " if total else ""
        print(
            f"\rreplay {share}{done / 1e6:8.1f} MB  {stats.messages:>9} bodies  "
            f"{stats.events:>10} events  {stats.rate():>9.0f} ev/s",
            end="",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(0.5)
