"""``wahook replay``: bodies from files, directories, JSONL or stdin through the pipeline,
with a progress bar and a summary of what was stored and quarantined."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

from wahook.settings import Settings
from wahook.sinks.base import Record, Sink, WriteResult


class DryRunSink:
    """Counts what would be written: every event applied, every problem quarantined."""

    async def write(self, batch: Sequence[Record]) -> WriteResult:
        return WriteResult(
            applied=sum(len(r.events) for r in batch),
            quarantined=sum(len(r.problems) for r in batch),
        )


@contextlib.asynccontextmanager
async def _dry_run_sink() -> AsyncIterator[Sink]:
    yield DryRunSink()


async def run_replay(
    settings: Settings,
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    progress: bool = False,
    out: TextIO | None = None,
    dead_letter_queue: str | None = None,
    quarantine: bool = False,
) -> int:
    """Replay ``paths`` (or drain ``dead_letter_queue``), then, with ``quarantine``, apply
    the quarantined items whose organization exists now. Returns the exit status."""
    from wahook.runtime.files import FileSource
    from wahook.runtime.resources import postgres_sink
    from wahook.runtime.signals import stop_on_signals
    from wahook.runtime.sqs_poll import SqsSource

    out = out or sys.stdout
    source: FileSource | SqsSource | None = None
    if dead_letter_queue:
        source = SqsSource(
            dead_letter_queue,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            receivers=settings.sqs_receivers,
            wait_seconds=1,
            drain=True,
        )
    elif paths:
        source = FileSource(paths)
    stop = asyncio.Event()
    status = 0
    with stop_on_signals(stop):
        async with _dry_run_sink() if dry_run else postgres_sink(settings) as sink:
            if source is not None:
                status = await _replay_source(source, sink, settings, stop, dry_run, progress, out)
            if quarantine and not stop.is_set():
                done = await sink.replay_quarantine()  # type: ignore[attr-defined]
                print(
                    f"quarantine: {done.applied} items applied, {done.still_unrouted} still "
                    f"without an organization, {done.undecodable} undecodable",
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
    print(
        f"replay: {summary['messages']} bodies, {summary['events']} events; {verb}: "
        f"{summary['applied']} applied, {summary['quarantined']} quarantined "
        f"({summary['undecodable']} undecodable bodies), {summary['duplicates']} duplicates; "
        f"not stored: {stats.failed}; {summary['events_per_second']} events/s",
        file=out,
    )
    for message_id in failed[:50]:
        print(f"  not stored: {message_id}", file=out)
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
