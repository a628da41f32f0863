"""In-memory stand-ins for the SQS client, for tests and benchmarks of the receiver.

``MemorySqs`` answers ``send_message_batch`` like SQS (every entry ``Successful``) and keeps
what it was sent; ``fail`` makes it report chosen entries ``Failed`` (or raise) so the
forwarder's retries and 503 can be exercised. ``AsyncMemorySqs`` is the same, awaitable.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class MemorySqs:
    sent: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    calls: int = 0
    fail: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    """Given an entry, a ``Failed`` item (``Code``, ``Message``, ``SenderFault``) or None."""
    error: Exception | None = None
    """Raised by every call when set."""
    _ids: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    # Keyword names as botocore spells them.
    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        ok: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in Entries:
            verdict = self.fail(entry) if self.fail is not None else None
            if verdict is not None:
                failed.append({"Id": entry["Id"], **verdict})
            else:
                self.sent.append({"QueueUrl": QueueUrl, **entry})
                ok.append({"Id": entry["Id"], "MessageId": f"m-{next(self._ids)}"})
        return {"Successful": ok, "Failed": failed}


class AsyncMemorySqs(MemorySqs):
    async def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        return super().send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
