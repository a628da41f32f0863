"""Prometheus metrics for the worker (``--metrics-port``): an ``Observer`` of the pipeline.

Series (all prefixed ``wahook_``): ``messages_total``, ``events_total{kind,type}``,
``undecodable_total``, ``unknown_total{label}`` (types/fields this wahook does not know),
``rows_committed_total{outcome}`` (applied, quarantined, duplicate), ``batches_total``,
``batch_records`` and ``commit_seconds`` histograms, ``failures_total{class}``,
``retries_total{class}``, ``lag_seconds`` (the age of the oldest body received and not
yet committed, from the source's receipt time; 0 when idle: see ``runtime.stats``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

from wahook.runtime.stats import Backlog
from wahook.sinks.base import Record, WriteResult


class PrometheusObserver:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = PromCounter("wahook_messages", "Source messages decoded", registry=r)
        self.events = PromCounter(
            "wahook_events",
            "Events committed, by kind and type (types this wahook does not know: 'unknown')",
            ["kind", "type"],
            registry=r,
        )
        self.undecodable = PromCounter(
            "wahook_undecodable", "Bodies that were not notifications", registry=r
        )
        self.unknown = PromCounter(
            "wahook_unknown", "Unknown message types, statuses and fields", ["label"], registry=r
        )
        self.rows = PromCounter(
            "wahook_rows_committed", "Sink outcomes committed", ["outcome"], registry=r
        )
        self.batches = PromCounter("wahook_batches", "Batches written", registry=r)
        self.batch_records = Histogram(
            "wahook_batch_records",
            "Records per batch",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "wahook_commit_seconds",
            "sink.write latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.failures = PromCounter(
            "wahook_failures", "Records given back uncommitted, by class", ["class"], registry=r
        )
        self.retries = PromCounter(
            "wahook_retries", "Write attempts retried, by class", ["class"], registry=r
        )
        self.backlog = Backlog()
        self.lag = Gauge(
            "wahook_lag_seconds",
            "Age of the oldest body received and not yet committed (0 when idle)",
            registry=r,
        )
        self.lag.set_function(self.backlog.lag)  # read at scrape time: idle reads 0

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``addr:port`` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)

    def decoded(self, record: Record, unknown: Counter[str] | None) -> None:
        self.backlog.add(record)
        self.messages.inc()
        if unknown is None:
            self.undecodable.inc()
        elif unknown:
            for label, n in unknown.items():
                self.unknown.labels(label).inc(n)

    def committed(self, batch: Sequence[Record], result: WriteResult, seconds: float) -> None:
        self.batches.inc()
        self.batch_records.observe(len(batch))
        self.commit_seconds.observe(seconds)
        self.rows.labels("applied").inc(result.applied)
        self.rows.labels("quarantined").inc(result.quarantined)
        self.rows.labels("duplicate").inc(result.duplicates)
        self.backlog.done(batch)
        kinds: Counter[tuple[str, str]] = Counter()
        for record in batch:
            if record.id in result.failed:
                continue
            for event in record.events:
                # Unknown type strings come from outside: kept out of label values.
                kinds[event.kind, event.type if event.known else "unknown"] += 1
        for (kind, type_), n in kinds.items():
            self.events.labels(kind, type_).inc(n)

    def retried(self, failure_class: str) -> None:
        self.retries.labels(failure_class).inc()

    def gave_up(self, failure_class: str, records: int) -> None:
        self.failures.labels(failure_class).inc(records)
