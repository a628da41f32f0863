"""The connections of ``wahook serve``: how long a client may wait, and how many it may hold.

Left to itself aiohttp gives a connection an hour to send its first request, waits forever
for a body that never comes, and accepts until the process runs out of file descriptors —
where asyncio logs every failed ``accept()`` with a traceback, up to a hundred a tick.
``GuardedServer`` (aiohttp's low-level ``web.Server``) adds:

- a header timeout: a connection must deliver a whole request head within
  ``header_timeout`` seconds of opening, or of its previous answer, else it is closed;
- a connection limit: past ``limit`` open connections, the one that has waited longest on
  its client (idle, sending its head, or sending the body the app reads) is closed to make
  room, so a flood of idle connections cannot lock out a real POST. Only when every
  connection is busy with a delivery is the newcomer closed instead;
- counts instead of lines: failed accepts, timeouts and shed connections are logged as one
  ``http_pressure`` line per ``log_seconds``.

The body timeout belongs to the app (``ReceiverApp``), which answers it with a 408; the app
tells each connection where it is with ``mark``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("wahook.receiver")

# asyncio's words for a failed accept() it will retry (EMFILE, ENFILE, ENOBUFS, ENOMEM).
_ACCEPT_FAILED = "socket.accept() out of system resource"


class Phase(enum.Enum):
    IDLE = "idle"  # no request under way: new, or kept alive after an answer
    HEAD = "head"  # bytes of a request head have arrived
    BODY = "body"  # the app is reading the body
    BUSY = "busy"  # the body is in: the answer waits on the delivery, not on the client


_WAITING_ON_CLIENT = (Phase.IDLE, Phase.HEAD, Phase.BODY)


class Tally:
    """Counts of what may happen thousands of times a second, logged as one line per
    ``seconds`` (the first at once after a quiet spell), only when something was counted."""

    def __init__(self, seconds: float, describe: Callable[[], str] = lambda: "") -> None:
        self.seconds = seconds
        self.describe = describe
        self.counts: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.detail = ""
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def add(self, kind: str, detail: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.totals[kind] = self.totals.get(kind, 0) + 1
        if detail:
            self.detail = detail
        if self._timer is None:
            loop = asyncio.get_running_loop()
            when = max(loop.time(), self._last + self.seconds)
            self._timer = loop.call_at(when, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.counts:
            return
        self._last = asyncio.get_running_loop().time()
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        # The error text goes last: it has spaces, and the log handler splits on `key=`.
        error = f" error={self.detail}" if self.detail else ""
        log.warning("http_pressure %s %s seconds=%g%s", counts, self.describe(), self.seconds,
                    error)  # fmt: skip
        self.counts = {}
        self.detail = ""


class Connection(web.RequestHandler):
    """aiohttp's handler of one connection, plus where it is in its request."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = manager
        self.phase = Phase.IDLE
        self.timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.IDLE and data:
            self.phase = Phase.HEAD
        super().data_received(data)


class GuardedServer(web.Server):
    """``web.Server`` with a header timeout, a connection limit and counted accept errors.
    ``install()`` takes over the loop's exception handler for failed accepts;
    ``uninstall()`` gives it back."""

    def __init__(
        self,
        handler: Any,
        *,
        header_timeout: float,
        limit: int,
        log_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.header_timeout = header_timeout
        self.limit = limit
        self.tally = Tally(log_seconds, lambda: f"open={len(self.open)} limit={self.limit}")
        self.open: dict[Connection, None] = {}
        # Connections waiting on their client, the longest-waiting first.
        self._waiting: dict[Connection, None] = {}
        self._handler_kwargs = kwargs
        self._loop_ = asyncio.get_running_loop()
        self._empty = asyncio.Event()
        self._empty.set()
        self._previous: Any = None

    def __call__(self) -> Connection:
        return Connection(self, loop=self._loop_, **self._handler_kwargs)

    # --- aiohttp's hooks ---------------------------------------------------------------

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        assert isinstance(handler, Connection)
        self.open[handler] = None
        self._empty.clear()
        self.mark(handler, Phase.IDLE)
        if len(self.open) > self.limit:
            self._shed(handler)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        assert isinstance(handler, Connection)
        if handler.timer is not None:
            handler.timer.cancel()
            handler.timer = None
        self._waiting.pop(handler, None)
        self.open.pop(handler, None)
        if not self.open:
            self._empty.set()

    # --- phases ------------------------------------------------------------------------

    def mark(self, conn: Connection, phase: Phase) -> None:
        conn.phase = phase
        self._waiting.pop(conn, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if conn not in self.open:
            return
        if phase in _WAITING_ON_CLIENT:
            self._waiting[conn] = None
        if phase is Phase.IDLE:
            conn.timer = self._loop_.call_later(self.header_timeout, self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        conn.timer = None
        if conn.phase in (Phase.IDLE, Phase.HEAD):
            self.tally.add("header_timeouts")
            conn.force_close()

    def _shed(self, new: Connection) -> None:
        victim = next(iter(self._waiting))  # holds `new` at least
        if victim is new:
            self.tally.add("refused")
        else:
            self.tally.add("evicted")
        self._waiting.pop(victim)
        victim.force_close()

    # --- failed accepts ----------------------------------------------------------------

    def install(self) -> None:
        self._previous = self._loop_.get_exception_handler()
        self._loop_.set_exception_handler(self._loop_exception)

    def uninstall(self) -> None:
        self._loop_.set_exception_handler(self._previous)
        self.tally.flush()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_FAILED:
            # asyncio retries in a second by itself; a line each time is what filled disks.
            self.tally.add("accept_errors", str(context.get("exception", "")))
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    # --- stop --------------------------------------------------------------------------

    def close_idle(self) -> int:
        """Close every connection with no request under way; return how many stay."""
        for conn in list(self.open):
            if conn.phase is Phase.IDLE:
                conn.force_close()
        return sum(1 for conn in self.open if conn.phase is not Phase.IDLE)

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.force_close()

    async def wait_closed(self, deadline: float) -> bool:
        """Wait until every connection is closed, or the loop clock reaches ``deadline``."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True


def mark(request: web.BaseRequest, phase: Phase) -> None:
    """Tell the request's connection where it is (nothing under another server)."""
    conn = request.protocol
    if isinstance(conn, Connection):
        conn.guard.mark(conn, phase)


def count(request: web.BaseRequest, kind: str) -> bool:
    """Count ``kind`` on the request's server; False under another server."""
    conn = request.protocol
    if isinstance(conn, Connection):
        conn.guard.tally.add(kind)
        return True
    return False
