"""``wahook worker`` and ``wahook replay``: settings from the environment, flags on top,
signals handled here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

import structlog

from wahook.errors import WahookError
from wahook.settings import Settings
from wahook.sinks.base import Record, Sink, WriteResult

log = structlog.get_logger("wahook.runtime")

WORKER_EXAMPLES = """\
examples:
  # settings from the environment (WAHOOK_DSN or DB_*, WAHOOK_QUEUE_URL or SQS_QUEUE_URL)
  wahook worker
  wahook worker --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/wahook \\
                --dsn postgresql://wahook@db.internal/whatsapp_db --metrics-port 9108
  # against a local SQS emulator
  wahook worker --endpoint-url http://127.0.0.1:5000 \\
                --queue-url http://127.0.0.1:5000/123456789012/wahook --log-format console

SIGTERM/SIGINT: stop receiving, finish and settle in-flight batches within --grace seconds,
give what is left back to the queue (visibility 0), exit 0. A second signal exits at once.
"""

REPLAY_EXAMPLES = """\
examples:
  wahook replay bodies.jsonl                 # one webhook body per line
  wahook replay captured/ --dry-run          # every .json/.jsonl under captured/, no writes
  zcat dump.jsonl.gz | wahook replay -       # stdin, one body per line
  wahook replay a.json b.json --dsn postgresql://postgres@127.0.0.1/whatsapp_db

Exit status: 0 when every body was stored or quarantined, 1 when some were not (they are
listed), 2 on a usage or configuration error.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dsn", metavar="DSN", help="PostgreSQL DSN (default: WAHOOK_DSN or DB_*)")
    p.add_argument(
        "--batch-size", type=int, metavar="N", help="events per transaction (default 1000)"
    )
    p.add_argument(
        "--batch-max-age", type=float, metavar="S", help="seconds a batch may wait (default 0.2)"
    )
    p.add_argument("--log-format", choices=("json", "console"), help="default: json")
    p.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning ... (default info)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    w = sub.add_parser(
        "worker",
        help="long-poll SQS and commit webhooks to PostgreSQL",
        description="Long-poll an SQS queue of webhook bodies and commit them to PostgreSQL;"
        " messages are deleted only after their batch has committed.",
        epilog=WORKER_EXAMPLES,
        formatter_class=fmt,
    )
    _common(w)
    w.add_argument(
        "--queue-url", metavar="URL", help="SQS queue URL (default: WAHOOK_QUEUE_URL/SQS_QUEUE_URL)"
    )
    w.add_argument(
        "--region", dest="aws_region", metavar="REGION", help="AWS region (default: AWS_REGION)"
    )
    w.add_argument(
        "--endpoint-url", dest="aws_endpoint_url", metavar="URL", help="SQS endpoint override"
    )
    w.add_argument(
        "--receivers", dest="sqs_receivers", type=int, metavar="N", help="concurrent long polls"
    )
    w.add_argument(
        "--writers", type=int, metavar="N", help="concurrent batch transactions (default 2)"
    )
    w.add_argument(
        "--grace", dest="grace_seconds", type=float, metavar="S", help="stop grace (default 20)"
    )
    w.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus /metrics on this port"
    )
    w.add_argument(
        "--progress-every",
        dest="progress_seconds",
        type=float,
        metavar="S",
        help="seconds (default 10)",
    )
    w.set_defaults(func=worker_command)

    r = sub.add_parser(
        "replay",
        help="feed files, directories, JSONL or stdin through the pipeline",
        description="Feed webhook bodies from files, directories, JSONL or stdin through the"
        " same pipeline as the worker, and summarize what was stored and quarantined.",
        epilog=REPLAY_EXAMPLES,
        formatter_class=fmt,
    )
    _common(r)
    r.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, or - for stdin")
    r.add_argument("--dry-run", action="store_true", help="decode and count, write nothing")
    r.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )
    r.set_defaults(func=replay_command)


def _settings(args: argparse.Namespace, **defaults: Any) -> Settings:
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("func", "command", "paths", "dry_run", "progress")
    }
    settings = Settings.from_env().replace(**flags)
    from wahook.runtime.logs import configure_logging

    configure_logging(settings.log_format, defaults.get("log_level") or settings.log_level)
    return settings


# --- worker ---------------------------------------------------------------------------


def worker_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        if not settings.queue_url:
            raise WahookError("no queue: set WAHOOK_QUEUE_URL (or SQS_QUEUE_URL) or --queue-url")
        if not settings.dsn:
            raise WahookError("no database: set WAHOOK_DSN (or DB_HOST ...) or pass --dsn")
        return asyncio.run(run_worker(settings))
    except WahookError as exc:
        print(f"wahook worker: {exc}", file=sys.stderr)
        return 2


async def run_worker(settings: Settings) -> int:
    from wahook.runtime.logs import redact_text
    from wahook.runtime.pipeline import Pipeline
    from wahook.runtime.resources import postgres_sink
    from wahook.runtime.signals import stop_on_signals
    from wahook.runtime.sqs_poll import SqsSource

    assert settings.queue_url is not None
    assert settings.dsn is not None
    stop = asyncio.Event()
    with stop_on_signals(stop):
        observers: list[Any] = []
        if settings.metrics_port is not None:
            from wahook.runtime.metrics import PrometheusObserver

            prometheus = PrometheusObserver()
            prometheus.serve(settings.metrics_port)
            observers.append(prometheus)
        source = SqsSource(
            settings.queue_url,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            receivers=settings.sqs_receivers,
        )
        log.info(
            "worker_starting",
            queue_url=settings.queue_url,
            dsn=redact_text(settings.dsn),
            batch_size=settings.batch_size,
            batch_max_age=settings.batch_max_age,
            receivers=settings.sqs_receivers,
            writers=settings.writers,
            grace=settings.grace_seconds,
            metrics_port=settings.metrics_port,
        )
        try:
            async with postgres_sink(settings) as sink:
                pipeline = Pipeline.from_settings(source, sink, settings, observers)
                progress = asyncio.create_task(
                    _progress(pipeline, source, settings.progress_seconds), name="wahook-progress"
                )
                try:
                    stats = await pipeline.run(stop)
                finally:
                    progress.cancel()
        except Exception as exc:
            log.error("worker_failed", error=repr(exc))
            return 1
        log.info("worker_stopped", **stats.summary())
    return 0


async def _progress(pipeline: Any, source: Any, every: float) -> None:
    """One ``progress`` event every ``every`` seconds: rates over the last interval."""
    stats = pipeline.stats
    last_events, last_time = stats.events, time.monotonic()
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        log.info(
            "progress",
            events_per_second=round((stats.events - last_events) / (now - last_time), 1),
            events=stats.events,
            messages=stats.messages,
            batches=stats.batches,
            quarantined=stats.quarantined,
            retries=stats.retries,
            failed=stats.failed,
            lag_seconds=None if stats.lag is None else round(stats.lag, 1),
            in_flight=getattr(source, "in_flight", None),
        )
        last_events, last_time = stats.events, now


# --- replay ---------------------------------------------------------------------------


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


def replay_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args, log_level=args.log_level or "warning")
        if not args.dry_run and not settings.dsn:
            raise WahookError("no database: set WAHOOK_DSN (or DB_HOST ...), --dsn, or --dry-run")
        show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
        return asyncio.run(run_replay(settings, args.paths, dry_run=args.dry_run, progress=show))
    except (WahookError, OSError) as exc:
        print(f"wahook replay: {exc}", file=sys.stderr)
        return 2


async def run_replay(
    settings: Settings,
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    progress: bool = False,
    out: TextIO | None = None,
) -> int:
    from wahook.runtime.files import FileSource
    from wahook.runtime.pipeline import Pipeline
    from wahook.runtime.resources import postgres_sink
    from wahook.runtime.signals import stop_on_signals

    out = out or sys.stdout
    source = FileSource(paths)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        async with _dry_run_sink() if dry_run else postgres_sink(settings) as sink:
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
    print(
        f"replay: {summary['messages']} bodies, {summary['events']} events; {verb}: "
        f"{summary['applied']} applied, {summary['quarantined']} quarantined "
        f"({summary['undecodable']} undecodable bodies), {summary['duplicates']} duplicates; "
        f"not stored: {len(source.failed)}; {summary['events_per_second']} events/s",
        file=out,
    )
    for message_id in source.failed[:50]:
        print(f"  not stored: {message_id}", file=out)
    if stop.is_set():
        print("replay: interrupted; run it again to finish (it is idempotent)", file=out)
        return 1
    return 1 if source.failed else 0


async def _bar(pipeline: Any, source: Any, show: bool) -> None:
    if not show:
        return
    stats = pipeline.stats
    while True:
        total = source.total_bytes
        done = min(source.read_bytes, total) if total else source.read_bytes
        share = f"{100 * done / total:5.1f}% " if total else ""
        print(
            f"\rreplay {share}{done / 1e6:8.1f} MB  {stats.messages:>9} bodies  "
            f"{stats.events:>10} events  {stats.rate():>9.0f} ev/s",
            end="",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(0.5)
