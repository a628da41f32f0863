"""What the pipeline counts, and the observer hook metrics exporters plug into.

``Stats`` is plain numbers (the progress line, the replay summary and the Lambda's EMF
line read it); ``metrics.PrometheusObserver`` turns the same calls into Prometheus series.

Lag is measured from when the *source* received each body (``Record.received_at``: the
POST's arrival, SQS's ``SentTimestamp``; for files, when it was read), never from the
timestamps inside the webhook, which say when WhatsApp saw the event and can be hours old
on a redelivery. ``lag`` is the age of the oldest body decoded and not yet committed: how
far behind the pipeline is *now*, growing while the database is down, 0 when idle.
``commit_delay`` is the longest receipt-to-commit time of the run (the Lambda reports it).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from wahook.sinks.base import Record, WriteResult


class Observer(Protocol):
    def decoded(self, record: Record, unknown: Counter[str] | None) -> None:
        """One message decoded (``unknown`` is None when the whole body was undecodable)."""

    def committed(self, batch: Sequence[Record], result: WriteResult, seconds: float) -> None:
        """One ``sink.write`` returned."""

    def retried(self, failure_class: str) -> None:
        """One ``sink.write`` attempt failed and will be retried."""

    def gave_up(self, failure_class: str, records: int) -> None:
        """Records given back to the source without being committed."""


class Backlog:
    """Bodies decoded and not yet committed, with when their source received them."""

    def __init__(self) -> None:
        self._waiting: dict[str, float] = {}

    def add(self, record: Record) -> None:
        received = record.received_at
        self._waiting[record.id] = time.time() if received is None else received

    def done(self, batch: Sequence[Record]) -> float | None:
        """Forget ``batch`` (committed, or given back to the source); the seconds since
        its oldest body was received."""
        oldest = None
        for record in batch:
            received = self._waiting.pop(record.id, None)
            if received is not None and (oldest is None or received < oldest):
                oldest = received
        return None if oldest is None else max(0.0, time.time() - oldest)

    def lag(self) -> float:
        """Seconds the oldest waiting body has waited; 0.0 when none waits."""
        # A copy in one step: the metrics exporter calls this from its own thread.
        waiting = list(self._waiting.values())
        return max(0.0, time.time() - min(waiting)) if waiting else 0.0


@dataclasses.dataclass(slots=True)
class Stats:
    """Running totals of one pipeline run."""

    messages: int = 0
    events: int = 0
    undecodable: int = 0
    batches: int = 0
    applied: int = 0
    quarantined: int = 0
    duplicates: int = 0
    failed: int = 0
    retries: int = 0
    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    unknown: Counter[str] = dataclasses.field(default_factory=Counter)
    failures: Counter[str] = dataclasses.field(default_factory=Counter)
    commit_delay: float | None = None
    commit_seconds: float = 0.0
    started: float = dataclasses.field(default_factory=time.monotonic)
    backlog: Backlog = dataclasses.field(default_factory=Backlog)

    @property
    def lag(self) -> float:
        """Seconds the oldest body received and not yet committed has waited; 0 if idle."""
        return self.backlog.lag()

    def decoded(self, record: Record, unknown: Counter[str] | None) -> None:
        self.backlog.add(record)
        self.messages += 1
        self.events += len(record.events)
        if unknown is None:
            self.undecodable += 1
        elif unknown:
            self.unknown.update(unknown)

    def committed(self, batch: Sequence[Record], result: WriteResult, seconds: float) -> None:
        self.batches += 1
        self.applied += result.applied
        self.quarantined += result.quarantined
        self.duplicates += result.duplicates
        self.failed += len(result.failed)
        self.commit_seconds += seconds
        delay = self.backlog.done(batch)
        if delay is not None and (self.commit_delay is None or delay > self.commit_delay):
            self.commit_delay = delay
        for record in batch:
            if record.id in result.failed:
                continue
            for event in record.events:
                self.kinds[event.kind] += 1

    def retried(self, failure_class: str) -> None:
        self.retries += 1

    def gave_up(self, failure_class: str, records: int) -> None:
        self.failures[failure_class] += records

    def stored(self) -> int:
        """Messages durably handled (applied or quarantined)."""
        return self.messages - self.failed

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "events": self.events,
            "batches": self.batches,
            "applied": self.applied,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "undecodable": self.undecodable,
            "failed": self.failed,
            "retries": self.retries,
            "events_per_second": round(self.rate(), 1),
            "lag_seconds": round(self.lag, 3),
        }


class Fanout:
    """Several observers seen as one."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def decoded(self, record: Record, unknown: Counter[str] | None) -> None:
        for o in self.observers:
            o.decoded(record, unknown)

    def committed(self, batch: Sequence[Record], result: WriteResult, seconds: float) -> None:
        for o in self.observers:
            o.committed(batch, result, seconds)

    def retried(self, failure_class: str) -> None:
        for o in self.observers:
            o.retried(failure_class)

    def gave_up(self, failure_class: str, records: int) -> None:
        for o in self.observers:
            o.gave_up(failure_class, records)
