"""The aiohttp app of ``wahook serve``: the receiver core behind a real HTTP server.

Routes: ``/webhook`` (GET handshake, POST notifications), ``/healthz`` (the process is up),
``/readyz`` (it can take webhooks: the delivery is ready and no stop has begun). Anything
else is 404; other methods on ``/webhook`` are 405.

A POST body is read only up to the size limit: a ``Content-Length`` over it is refused
before reading (and before any ``100 Continue``), and a chunked body is refused as soon as
it crosses it. A body not in within ``body_timeout`` seconds is answered 408. Accepted
bodies go to a ``Delivery`` — SQS (``SqsDelivery``) or the in-process pipeline
(``InProcessDelivery``) — and Meta gets its 200 only once the delivery succeeded.

On stop, ``cut_off(when)`` bounds every request under way: one still reading its body or
waiting on its delivery at ``when`` is answered 503 (Meta retries it).

The access log leaves out query strings: the handshake carries the verify token there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest

from wahook.errors import WahookError
from wahook.receiver.connections import Phase, count, mark
from wahook.receiver.core import (
    HEALTH_PATH,
    READY_PATH,
    UNAVAILABLE,
    WEBHOOK_PATH,
    Accepted,
    Receiver,
    Request,
    Response,
)
from wahook.receiver.forward import AsyncForwarder, ForwardError
from wahook.verdict import Verdict

log = logging.getLogger("wahook.receiver")
access_log = logging.getLogger("wahook.receiver.access")

_READ_CHUNK = 64 * 1024
_TEXT = {"content-type": "text/plain; charset=utf-8"}
TOO_SLOW = Response(408, b"request body not received in time", _TEXT)
INCOMPLETE = Response(400, b"request body incomplete", _TEXT)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class DeliveryError(WahookError):
    """An accepted body could not be handed on; Meta is told to retry (503)."""


class Delivery(Protocol):
    """Where accepted bodies go. ``__call__`` returns a short description for the log once
    the body is safe, and raises ``DeliveryError`` when it is not."""

    def ready(self) -> bool: ...

    async def __call__(self, accepted: Accepted) -> str: ...


class SqsDelivery:
    """Forward to SQS; safe once SQS accepted every part."""

    def __init__(self, forwarder: AsyncForwarder) -> None:
        self.forwarder = forwarder

    def ready(self) -> bool:
        return True

    async def __call__(self, accepted: Accepted) -> str:
        try:
            parts = await self.forwarder.send(accepted)
        except ForwardError as exc:
            raise DeliveryError(str(exc)) from exc
        return f"sqs parts={parts}"


class BodyQueue(Protocol):
    """What ``InProcessDelivery`` needs of ``wahook.runtime.inprocess.InProcessSource``."""

    async def put(
        self,
        body: bytes,
        *,
        id: str | None = None,
        received_at: float | None = None,
        verdict: Verdict = ...,
    ) -> asyncio.Future[bool]: ...


class InProcessDelivery:
    """Hand the body to the pipeline in this process; safe once its batch committed
    (stored or quarantined). So a crash never loses a body Meta was told is stored."""

    def __init__(
        self, queue: BodyQueue, *, timeout: float = 30.0, ready: Callable[[], bool] = lambda: True
    ) -> None:
        self.queue = queue
        self.timeout = timeout
        self._ready = ready

    def ready(self) -> bool:
        return self._ready()

    async def __call__(self, accepted: Accepted) -> str:
        if not self._ready():
            raise DeliveryError("the pipeline is not running")
        try:
            async with asyncio.timeout(self.timeout):
                done = await self.queue.put(
                    accepted.body, received_at=accepted.received_at, verdict=accepted.verdict
                )
                committed = await done
        except TimeoutError:
            raise DeliveryError(f"not committed within {self.timeout:g}s") from None
        except RuntimeError as exc:  # the source is closed: we are shutting down
            raise DeliveryError(str(exc)) from None
        if not committed:
            raise DeliveryError("the pipeline did not commit the body")
        return "pipeline"


class _AccessLogger(AbstractAccessLogger):
    """Method, path (never the query), status, size and time as one event, at DEBUG: the
    receiver logs every accepted body and every refusal itself."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "http_request method=%s path=%s status=%d bytes=%d ms=%.2f",
            request.method, request.path, response.status, response.body_length, time * 1000,
        )  # fmt: skip


def _to_web(response: Response, *, close: bool = False) -> web.Response:
    out = web.Response(status=response.status, body=response.body, headers=response.headers)
    if close:
        out.force_close()
    return out


class ReceiverApp:
    """The aiohttp side of the receiver: one catch-all handler around ``Receiver``.

    ``refresh`` (optional) reloads organization credentials: when a handshake or a
    signature is refused, it is called once (it rate-limits itself) and the request is
    judged again, so an organization added a moment ago is not refused.
    """

    def __init__(
        self,
        receiver: Receiver,
        delivery: Delivery,
        *,
        refresh: Callable[[], Awaitable[bool]] | None = None,
        body_timeout: float = 30.0,
    ) -> None:
        self.receiver = receiver
        self.delivery = delivery
        self.refresh = refresh
        self.body_timeout = body_timeout
        self.stopping = False
        self.in_flight = 0
        """Accepted bodies being delivered right now."""
        self.accepted = 0
        """Bodies whose signature checked out, since the start."""
        self.delivered = 0
        """Accepted bodies delivered (answered 200); the rest were not acknowledged."""
        self._cut_at: float | None = None
        self._cuts: set[asyncio.Timeout] = set()
        receiver.ready = self.ready

    def ready(self) -> bool:
        return not self.stopping and self.delivery.ready()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.receiver.max_body_bytes + 1)
        # Plain routes first (a dict lookup), then everything else, all to the same
        # handler: the core gives 404 and 405 too. ``handle`` answers ``Expect`` itself,
        # after the size check.
        for path in (WEBHOOK_PATH, HEALTH_PATH, READY_PATH):
            app.router.add_route("*", path, self.handle, expect_handler=_no_continue)
        app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=_no_continue)
        return app

    @staticmethod
    def access_logger() -> dict[str, Any]:
        """Keyword arguments for ``web.AppRunner``: the query-free access log."""
        return {"access_log_class": _AccessLogger, "access_log": access_log}

    def cut_off(self, when: float) -> None:
        """From the loop time ``when`` on, answer 503 to whatever is still reading a body
        or waiting on its delivery (a stop's deadline)."""
        self._cut_at = when
        for cut in self._cuts:
            cut.reschedule(when)

    @contextlib.asynccontextmanager
    async def _until_cut(self) -> AsyncIterator[None]:
        async with asyncio.timeout_at(self._cut_at) as cut:
            self._cuts.add(cut)
            try:
                yield
            finally:
                self._cuts.discard(cut)

    async def _read_body(self, request: BaseRequest) -> bytes | Response:
        length = request.content_length
        if length is not None:
            try:
                return await request.content.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                return exc.partial  # the client hung up: its signature will not match
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if refused := self.receiver.too_large(size):
                return refused
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_in_time(self, request: BaseRequest) -> bytes | Response:
        """The body, or the answer instead: 413 (over the limit, said before any
        ``100 Continue``), 408 (not in within ``body_timeout``), 503 (cut off by a stop),
        400 (broken off or malformed)."""
        length = request.content_length
        if length is not None and (refused := self.receiver.too_large(length)):
            return refused
        limit = asyncio.timeout(self.body_timeout)
        try:
            if (
                request.version == HttpVersion11
                and request.headers.get("Expect", "").lower() == "100-continue"
            ):
                await request.writer.write(_CONTINUE)
                request.writer.output_size = 0  # the answer proper has not begun
            async with self._until_cut(), limit:
                return await self._read_body(request)
        except TimeoutError:
            if not limit.expired():
                return UNAVAILABLE
            if not count(request, "body_timeouts"):
                log.info("body_timeout seconds=%g", self.body_timeout)
            return TOO_SLOW
        except (OSError, RequestPayloadError):  # the connection was lost or malformed
            return INCOMPLETE
        except RuntimeError:  # aiohttp's word for reading a connection we closed (shed)
            if request.transport is not None:
                raise
            return INCOMPLETE

    async def handle(self, request: BaseRequest) -> web.Response:
        try:
            return await self._handle(request)
        finally:
            # Stopping, the answer closes the connection: it is never idle again, and a
            # stop closing idle connections must not take it before its answer is out.
            mark(request, Phase.BUSY if self.stopping else Phase.IDLE)

    def _answer(self, response: Response, *, close: bool = False) -> web.Response:
        return _to_web(response, close=close or self.stopping)

    async def _handle(self, request: BaseRequest) -> web.Response:
        received_at = time.time()
        body = b""
        if request.method == "POST" and self.receiver.is_webhook(request.path):
            mark(request, Phase.BODY)
            read = await self._read_in_time(request)
            if isinstance(read, Response):
                return self._answer(read, close=True)
            body = read
        mark(request, Phase.BUSY)
        req = Request(request.method, request.path, request.query, request.headers, body,
                      received_at)  # fmt: skip
        decision = self.receiver.handle(req, quiet=self.refresh is not None)
        if isinstance(decision, Response) and decision.status == 403 and self.refresh is not None:
            await self.refresh()
            # Judged again even when nothing was reloaded: this answer is the one logged.
            decision = self.receiver.handle(req)
        if isinstance(decision, Response):
            return self._answer(decision)
        self.accepted += 1
        self.in_flight += 1
        try:
            async with self._until_cut():
                where = await self.delivery(decision)
        except DeliveryError as exc:
            return self._answer(self.receiver.not_delivered(decision, str(exc)))
        except TimeoutError:  # cut off by a stop (or a delivery's own unconverted timeout)
            reason = "stopping: not delivered within the grace period"
            return self._answer(self.receiver.not_delivered(decision, reason))
        finally:
            self.in_flight -= 1
        self.delivered += 1
        return self._answer(self.receiver.delivered(decision, where))


async def _no_continue(request: web.Request) -> None:
    """aiohttp's default sends ``100 Continue`` before the handler runs — before a 413."""
