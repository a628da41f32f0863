"""A loopback TCP relay in front of PostgreSQL that a fault test can cut and restore.

``wahook serve`` and ``wahook worker`` are given the relay's port instead of the server's,
so cutting the relay is a database outage as they see it — live connections reset, new
ones refused — while the shared PostgreSQL service and every other test's database keep
running. ``restore()`` listens again on the same port, so the DSN the processes hold
stays valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 65536


class CuttableRelay:
    """``async with CuttableRelay("127.0.0.1", 5432) as relay:`` then ``relay.dsn(dsn)``,
    ``await relay.cut()``, ``await relay.restore()``. Counts what it did, for reports."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cuts = 0
        self.connections_reset = 0
        self._listener: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    @classmethod
    def for_dsn(cls, dsn: str) -> CuttableRelay:
        parts = urlsplit(dsn)
        host = parts.hostname or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the relay only fronts a loopback server, not {host}")
        return cls(host, parts.port or 5432)

    async def __aenter__(self) -> CuttableRelay:
        await self._listen()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._drop_everything()

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the relay's."""
        parts = urlsplit(dsn)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones (an outage, not a slow link)."""
        if self._listener is None:
            return
        self.cuts += 1
        await self._drop_everything()

    async def restore(self) -> None:
        """Listen again, on the same port."""
        if self._listener is None:
            await self._listen()

    async def _listen(self) -> None:
        # The port is kept across cuts; SO_REUSEADDR (asyncio's default on Unix) lets the
        # listener come back while the reset connections sit in TIME_WAIT.
        self._listener = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, family=socket.AF_INET
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])

    async def _drop_everything(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        links = list(self._links)
        for link in links:
            link.cancel()
        self.connections_reset += len(links)
        await asyncio.gather(*links, return_exceptions=True)
        if listener is not None:
            await listener.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        link = asyncio.current_task()
        assert link is not None
        self._links.add(link)
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
            async with asyncio.TaskGroup() as both_ways:
                both_ways.create_task(_copy(client_r, server_w))
                both_ways.create_task(_copy(server_r, client_w))
        except (OSError, asyncio.CancelledError, ExceptionGroup):
            pass
        finally:
            self._links.discard(link)
            # abort, not close: the peer sees a reset at once, as when a server dies.
            client_w.transport.abort()
            if server_w is not None:
                server_w.transport.abort()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await src.read(_CHUNK):
            dst.write(chunk)
            await dst.drain()
    # One direction ended (EOF or error): end the other too, so the link task finishes.
    raise ConnectionResetError("relay direction closed")
