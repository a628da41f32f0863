"""Faults at seeded random points of a ledger run: SIGKILL of a managed process (then
restarted) or a cut of the database relay, and a supervisor that restarts, and reports,
any process that exited on its own."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from tests.fault.ledger import Fault, LedgerRun, Progress
from tests.fault.processes import Managed
from tests.fault.tcp_proxy import CuttableRelay

UP_TIMEOUT = 90.0  # seconds a restarted process gets to come up
POLL = 0.05


@dataclasses.dataclass
class Plan:
    kills: int
    cuts: int
    cut_seconds: tuple[float, ...]  # the n-th cut lasts cut_seconds[n % len]
    seed: int

    def points(self, total: int) -> list[tuple[int, str, float]]:
        """(acknowledgements to wait for, "kill" or "cut", cut length), in order."""
        rng = random.Random(self.seed)
        kinds = ["kill"] * self.kills + ["cut"] * self.cuts
        rng.shuffle(kinds)
        marks = sorted(int(total * rng.uniform(0.08, 0.85)) for _ in kinds)
        lengths = iter(self.cut_seconds * self.cuts)
        return [
            (m, k, next(lengths) if k == "cut" else 0.0) for m, k in zip(marks, kinds, strict=True)
        ]


async def stop_all(roles: Sequence[Managed]) -> list[int | None]:
    """SIGTERM every role at once and wait in threads: the relay they close their
    connections through runs on this event loop, which must keep turning meanwhile."""
    return list(await asyncio.gather(*(asyncio.to_thread(role.stop) for role in roles)))


async def bounded_wait(done: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while not done():  # noqa: ASYNC110  (no event to wait on: a process, a queue)
            await asyncio.sleep(POLL)


class Chaos:
    """Runs the plan against ``targets`` while the run goes, restarting what it killed and
    (counted as unplanned) anything that exited on its own."""

    def __init__(
        self,
        run: LedgerRun,
        plan: Plan,
        targets: Sequence[Managed],
        relay: CuttableRelay,
        progress: Progress,
        is_up: Callable[[Managed], Awaitable[bool]],
        after_kill: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.run, self.plan, self.targets = run, plan, list(targets)
        self.relay, self.progress, self.is_up = relay, progress, is_up
        self.after_kill = after_kill
        self.rng = random.Random(plan.seed + 1)
        self._killed: set[str] = set()  # down on purpose: not the supervisor's to restart

    async def wait_up(self, role: Managed) -> None:
        async with asyncio.timeout(UP_TIMEOUT):
            while not await self.is_up(role):
                if not role.running:
                    raise AssertionError(f"{role.name} exited while starting:\n{role.tail()}")
                await asyncio.sleep(POLL * 4)

    async def supervise(self) -> None:
        """Restart a role that exited without being killed (and say so)."""
        while True:
            for role in self.targets:
                if role.name in self._killed:
                    continue
                if not role.running and len(self.run.unplanned_exits) < 10:
                    self.run.unplanned_exits.append(f"{role.name}: {role.tail(800)}")
                    role.start()
            await asyncio.sleep(POLL * 4)

    async def play(self) -> None:
        for mark, kind, seconds in self.plan.points(self.run.deliveries):
            await bounded_wait(lambda m=mark: self.progress.count >= m, 600)
            if kind == "kill":
                role = self.rng.choice(self.targets)
                fault = Fault(f"kill {role.name}", time.monotonic())
                self._killed.add(role.name)
                role.kill()
                if self.after_kill is not None:
                    await self.after_kill()
                await asyncio.sleep(self.rng.uniform(0.0, 0.5))
                role.start()
                self._killed.discard(role.name)
                fault.ended = time.monotonic()
                self.run.faults.append(fault)
                await self.wait_up(role)
            else:
                fault = Fault(f"cut database {seconds:g} s", time.monotonic())
                await self.relay.cut()
                await asyncio.sleep(seconds)
                await self.relay.restore()
                fault.ended = time.monotonic()
                self.run.faults.append(fault)
