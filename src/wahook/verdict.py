"""Whose data a body may carry: the receiver's tenancy verdict.

The receiver checks a POST's signature against the deployment-wide app secrets
(``WEBHOOK_SECRET``) and the app secrets of the organizations the body names. Its verdict:

- ``ANY`` when a deployment-wide secret verified: the body may carry any organization's items;
- the organizations whose app secret verified (every organization holding that secret, when
  several share one Meta app's secret): only their items may be stored;
- ``UNVERIFIED`` for a body that reached a source without a verdict (queued or
  dead-lettered before verdicts existed): none of its items is applied until an operator
  says whose data it is (``wahook replay --quarantine --any-organization`` or
  ``--organization N``).

The verdict travels with the body: the SQS message attribute ``verdict``, the in-process
hand-off of ``wahook serve``, the quarantine's ``verdict`` column. An item routed to an
organization the verdict does not allow is quarantined, never applied (DESIGN.md, tenancy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

_ANY = "any"
_UNVERIFIED = "unverified"


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """``any``: every organization; else exactly ``organizations``. ``unverified``: no
    signature was checked for this body (it allows nothing)."""

    organizations: frozenset[int] = frozenset()
    any: bool = False
    unverified: bool = False

    @classmethod
    def of(cls, organizations: Iterable[int]) -> Verdict:
        return cls(frozenset(organizations))

    def allows(self, organization: int) -> bool:
        return self.any or organization in self.organizations

    @property
    def allowed(self) -> frozenset[int] | None:
        """None when every organization is allowed, else the allowed ones."""
        return None if self.any else self.organizations

    def encode(self) -> str:
        """``any``, ``unverified``, or the organization ids ascending, comma-separated."""
        if self.any:
            return _ANY
        if self.unverified:
            return _UNVERIFIED
        return ",".join(str(o) for o in sorted(self.organizations))

    @classmethod
    def decode(cls, text: str | None) -> Verdict | None:
        """The verdict ``encode`` wrote; None when ``text`` is None (no verdict travelled
        with the body). Text that is not a verdict allows nothing (``UNVERIFIED``)."""
        if text is None:
            return None
        text = text.strip()
        if text == _ANY:
            return ANY
        if not text or text == _UNVERIFIED:
            return UNVERIFIED
        try:
            ids = frozenset(int(part) for part in text.split(","))
        except ValueError:
            return UNVERIFIED
        if any(i <= 0 for i in ids):
            return UNVERIFIED
        return cls(ids)

    def __str__(self) -> str:
        return self.encode()


ANY = Verdict(any=True)
UNVERIFIED = Verdict(unverified=True)
