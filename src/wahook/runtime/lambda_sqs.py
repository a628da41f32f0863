"""The AWS Lambda handler behind an SQS event source mapping.

Use ``wahook.runtime.lambda_sqs.handler`` as the handler string (settings from the
environment), or build one with ``make_handler(settings, sink_factory=...)``. Enable
``ReportBatchItemFailures`` on the event source mapping: the handler returns
``{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`` naming only the records
that must come back.

One event loop and one sink (one connection pool) live across warm invocations. Every
record of an invocation is decoded and committed as one batch through the same pipeline as
the worker. The handler watches ``context.get_remaining_time_in_millis()`` and reports as
failed whatever it cannot commit before the timeout, instead of losing the whole batch to
it. On a FIFO queue, once a record of a message group fails, every later record of that
group is reported too, so SQS keeps the group's order. Metrics go to stdout as CloudWatch
Embedded Metric Format lines. The handler never touches signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO

import structlog

from wahook.runtime.failures import RetryPolicy
from wahook.runtime.pipeline import Pipeline
from wahook.runtime.source import BaseSource, Message
from wahook.runtime.sqs_message import to_message
from wahook.runtime.stats import Stats
from wahook.settings import Settings
from wahook.sinks.base import Sink

log = structlog.get_logger("wahook.runtime.lambda")

SinkFactory = Callable[[Settings], Awaitable[Sink]]

SAFETY_MS = 1500
"""Time kept back from the Lambda timeout: settling and returning take a little."""


def _lambda_message(record: Mapping[str, Any]) -> Message:
    return to_message(
        record["messageId"],
        record.get("body", ""),
        record.get("attributes", {}),
        record.get("messageAttributes", {}),
    )


class LambdaSqsSource(BaseSource):
    """The records of one invocation: one batch, then the end. Settling collects the ids
    that failed; leaving the context counts everything unsettled as failed."""

    def __init__(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.messages = [_lambda_message(r) for r in records]
        self.fifo = any(str(r.get("eventSourceARN", "")).endswith(".fifo") for r in records) or any(
            m.group is not None for m in self.messages
        )
        self._unsettled = {m.id for m in self.messages}
        self._failed: set[str] = set()
        self._given = False

    async def next_batch(self) -> Sequence[Message] | None:
        if self._given:
            return None
        self._given = True
        return self.messages

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        for message in batch:
            self._unsettled.discard(message.id)
            if message.id in failed:
                self._failed.add(message.id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.fail_unsettled()

    def fail_unsettled(self) -> None:
        """Everything not settled yet is to be reported (and so redelivered)."""
        self._failed |= self._unsettled
        self._unsettled = set()

    def failures(self) -> list[str]:
        """Ids to report, in event order; on FIFO, a failure fails the rest of its group."""
        failed: list[str] = []
        broken_groups: set[str] = set()
        for m in self.messages:
            if m.id in self._failed or (self.fifo and m.group in broken_groups):
                failed.append(m.id)
                if self.fifo:
                    broken_groups.add(m.group or "")
        return failed


async def postgres_sink(settings: Settings) -> Sink:
    """The default sink: PostgreSQL at ``settings.dsn`` with a small pool."""
    from wahook.runtime.resources import open_postgres_sink

    return await open_postgres_sink(settings)


def emf_line(stats: Stats, *, function: str, records: int, failures: int, seconds: float) -> str:
    """One CloudWatch Embedded Metric Format record (a JSON line on stdout)."""
    metrics = {
        "Records": (records, "Count"),
        "Events": (stats.events, "Count"),
        "Applied": (stats.applied, "Count"),
        "Quarantined": (stats.quarantined, "Count"),
        "Duplicates": (stats.duplicates, "Count"),
        "BatchItemFailures": (failures, "Count"),
        "Retries": (stats.retries, "Count"),
        "CommitSeconds": (stats.commit_seconds, "Seconds"),
        "InvocationSeconds": (seconds, "Seconds"),
    }
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": "wahook",
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": k, "Unit": u} for k, (_, u) in metrics.items()],
                }
            ],
        },
        "FunctionName": function,
        **{k: v for k, (v, _) in metrics.items()},
    }
    if stats.commit_delay is not None:
        # From SQS's receipt of the oldest body to its commit (``runtime.stats``).
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].append(
            {"Name": "LagSeconds", "Unit": "Seconds"}
        )
        doc["LagSeconds"] = round(stats.commit_delay, 3)
    return json.dumps(doc, separators=(",", ":"))


class LambdaHandler:
    """A callable ``(event, context) -> {"batchItemFailures": [...]}`` that keeps its loop
    and sink between warm invocations."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        sink_factory: SinkFactory = postgres_sink,
        safety_ms: int = SAFETY_MS,
        retry_for: float = 10.0,
        metrics_stream: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.sink_factory = sink_factory
        self.safety_ms = safety_ms
        self.retry_for = retry_for
        self.metrics_stream = metrics_stream
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sink: Sink | None = None
        self.invocations = 0

    def close(self) -> None:
        """Close the sink's pool (when it exposes one) and the loop. Lambda never calls it
        (the container just freezes); tests and embedding code do."""
        if self.loop is None or self.loop.is_closed():
            return
        pool = getattr(self.sink, "pool", None)
        if pool is not None and hasattr(pool, "close"):
            self.loop.run_until_complete(pool.close())
        self.sink = None
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def __call__(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(self.handle(event, context))

    async def handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        started = time.monotonic()
        self.invocations += 1
        records = event.get("Records") or []
        source = LambdaSqsSource(records)
        loop = asyncio.get_running_loop()
        remaining_ms = _remaining_ms(context)
        budget = None if remaining_ms is None else (remaining_ms - self.safety_ms) / 1000
        bound = log.bind(request_id=getattr(context, "aws_request_id", None), records=len(records))
        stats = Stats()
        if budget is not None and budget <= 0:
            bound.warning("lambda_no_time", remaining_ms=remaining_ms)
            source.fail_unsettled()
        elif records:
            try:
                if self.sink is None:
                    if self.settings is None:
                        self.settings = Settings.from_env()
                    async with asyncio.timeout(budget):
                        self.sink = await self.sink_factory(self.settings)
                retry_for = self.retry_for if budget is None else min(self.retry_for, budget / 2)
                pipeline = Pipeline(
                    source,
                    self.sink,
                    batch_size=sys.maxsize,
                    batch_max_age=0.0,
                    grace=0.0,
                    retry=RetryPolicy(give_up_after=retry_for),
                )
                deadline = None if budget is None else loop.time() + budget
                stats = await pipeline.run(deadline=deadline)
            except Exception as exc:  # the sink could not even be opened: retry them all
                bound.error("lambda_batch_failed", error=repr(exc))
                source.fail_unsettled()
        failures = source.failures()
        seconds = time.monotonic() - started
        bound.info("lambda_batch_done", failures=len(failures), seconds=round(seconds, 4))
        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "wahook")
        line = emf_line(
            stats, function=function, records=len(records), failures=len(failures), seconds=seconds
        )
        print(line, file=self.metrics_stream or sys.stdout, flush=True)
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failures]}


def _remaining_ms(context: Any) -> int | None:
    get = getattr(context, "get_remaining_time_in_millis", None)
    return int(get()) if callable(get) else None


def make_handler(
    settings: Settings | None = None, *, sink_factory: SinkFactory = postgres_sink, **options: Any
) -> LambdaHandler:
    """A handler with custom settings or sink; assign it to a module-level name and use
    that as the Lambda handler string."""
    return LambdaHandler(settings, sink_factory=sink_factory, **options)


_default: LambdaHandler | None = None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """``wahook.runtime.lambda_sqs.handler``: settings from the environment."""
    global _default
    if _default is None:
        from wahook.deploy.secrets import load_secrets
        from wahook.runtime.logs import configure_logging
        from wahook.runtime.tuning import tune_gc

        load_secrets()  # secrets named by ARN/SSM reference -> plain variables, once
        settings = Settings.from_env()
        configure_logging(settings.log_format, settings.log_level)
        tune_gc(settings.gc_threshold)
        _default = make_handler(settings)
    return _default(event, context)
