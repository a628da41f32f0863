"""``wahook worker``: the SQS long-poll source through the pipeline into PostgreSQL, with
signals turned into a two-phase stop, a periodic progress line and optional Prometheus
metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from wahook.settings import Settings

log = structlog.get_logger("wahook.runtime")


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
            prometheus.serve(settings.metrics_port, addr=settings.host)
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
            lag_seconds=round(stats.lag, 1),
            in_flight=getattr(source, "in_flight", None),
        )
        last_events, last_time = stats.events, now
