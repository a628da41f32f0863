"""Failure classes and the retry policy for ``sink.write``.

*transient*: the database or the network, not the input, is at fault (connection refused or
lost, timeouts, serialization failures, deadlocks, the server shutting down). The batch is
retried with capped exponential backoff and never acknowledged until it commits; after
``give_up_after`` seconds it is handed back to the source (SQS redelivers it and, after
``maxReceiveCount`` receives, dead-letters it).

*permanent*: anything else raised by a sink. Retrying cannot help, so the batch is handed
back at once. (Bad input does not raise: the sink quarantines it inside the transaction.)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from wahook.errors import PermanentError, TransientError

FailureClass = Literal["transient", "permanent"]

# SQLSTATE classes worth retrying: connection exception, transaction rollback
# (serialization, deadlock), insufficient resources, operator intervention, system error.
_TRANSIENT_SQLSTATE = ("08", "40", "53", "57", "58")


def classify(exc: BaseException) -> FailureClass:
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, TransientError | OSError | TimeoutError):
        return "transient"
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE):
        return "transient"
    # asyncpg's InterfaceError for a connection that went away carries no SQLSTATE.
    if type(exc).__name__ in ("InterfaceError", "ConnectionDoesNotExistError") and (
        "closed" in str(exc) or "connection" in str(exc)
    ):
        return "transient"
    return "permanent"


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``first * 2**attempt`` capped at ``cap``, with jitter; give up after
    ``give_up_after`` seconds of failing (None: keep trying until stopped)."""

    first: float = 0.05
    cap: float = 5.0
    give_up_after: float | None = 120.0

    def delay(self, attempt: int, jitter: float) -> float:
        """``jitter`` in [0, 1) spreads concurrent workers over [delay/2, delay)."""
        base = min(self.cap, self.first * 2.0 ** min(attempt, 30))
        return base * (0.5 + jitter / 2)

    def exhausted(self, attempt: int, elapsed: float) -> bool:
        return self.give_up_after is not None and elapsed >= self.give_up_after
