"""The sink contract: a narrow ``write(batch)`` that commits one batch in one transaction.

A *record* is what one source message carried (one SQS message, one JSONL line, one POST):
its decoded events, the problems found while decoding it, and its raw bytes. The sink
applies the events, quarantines the problems (and records it cannot route) in the same
transaction, and reports the records it could not commit so the source does not
acknowledge them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from wahook.parse import ChangeEvent, MessageEvent, Problem, StatusEvent
from wahook.verdict import ANY, Verdict

Event = MessageEvent | StatusEvent | ChangeEvent


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One source message, decoded. ``problems`` holds items (or the whole body) that
    could not be decoded; they are quarantined with their raw bytes, never dropped.
    ``verdict`` names the organizations the record's items may be stored for; an item
    routed to another is quarantined (``wahook.verdict``)."""

    id: str
    events: Sequence[Event]
    problems: Sequence[Problem] = ()
    raw: bytes = b""
    received_at: float | None = None
    verdict: Verdict = ANY


@dataclasses.dataclass(slots=True)
class WriteResult:
    """What a ``write`` did. ``failed`` maps record id -> reason for every record that was
    **not** committed (the source must not acknowledge it); every other record's events
    and problems are durably stored (applied or quarantined).

    ``applied`` counts events routed to an organization and written (``duplicates`` of
    them were already stored); ``quarantined`` counts problems, events of unknown tenants
    and poisoned records."""

    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    applied: int = 0
    quarantined: int = 0
    duplicates: int = 0
    # Records that failed for a reason retrying cannot fix, stored whole in the quarantine
    # (so committed, not in ``failed``): record id -> reason. A record of which the sink
    # refused only some items is not one: those items are quarantined as problems with
    # their own bytes (counted in ``quarantined``), the rest stored, the record committed.
    poisoned: dict[str, str] = dataclasses.field(default_factory=dict)
    # True when some of ``failed`` failed for a transient reason (database down, timeouts):
    # worth redelivering later.
    transient: bool = False


class Sink(Protocol):
    async def write(self, batch: Sequence[Record]) -> WriteResult: ...
