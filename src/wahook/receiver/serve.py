"""``wahook serve``: the receiver on a real HTTP server, and what it delivers to.

- A queue URL configured: accepted bodies are forwarded to SQS (``wahook worker`` or the
  Lambda SQS handler stores them).
- No queue: bodies go straight to the pipeline in this process, which writes them to
  PostgreSQL — ``WAHOOK_DSN`` when set, else an embedded PostgreSQL under the data
  directory (``.wahook/``), started and migrated here. Meta gets its 200 once the body's
  batch committed.

With a database at hand (always in-process; with a queue when a DSN is set too), active
organizations' verify tokens and app secrets are accepted beside the configured ones.

Stopping (SIGTERM, SIGINT) is graceful and takes ``grace_seconds`` at most (the embedded
server's own stop aside): readiness turns false, the listener closes, idle connections
close, requests under way — a body still arriving included — are read, delivered and
answered; whatever is still under way near the end of the grace is answered 503 (Meta
retries it), the pipeline gets what is left of the grace to commit, then is cancelled, and
the pool closes. A last line says how many accepted bodies were stored and how many were
not (those were never acknowledged, so Meta delivers them again).

Connections are guarded (``connections.GuardedServer``): a header timeout, a body timeout
(in the app), a connection limit under the file-descriptor limit, and failed accepts
logged as counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from wahook.errors import ConfigError
from wahook.receiver.app import Delivery, InProcessDelivery, ReceiverApp, SqsDelivery
from wahook.receiver.connections import GuardedServer
from wahook.receiver.core import (
    HEALTH_PATH,
    NO_CREDENTIALS,
    READY_PATH,
    WEBHOOK_PATH,
    Credentials,
    Receiver,
)
from wahook.receiver.forward import AsyncForwarder, Planner
from wahook.settings import Settings, aws_client_args, aws_endpoint_url

log = logging.getLogger("wahook.receiver")

IN_PROCESS_MAX_AGE = 0.05
"""The longest a body waits for its batch in-process (seconds); Meta waits with it."""
ACCEPT_BACKLOG = 64
"""The listen backlog, and so how many connections asyncio accepts in one go: each takes a
descriptor before the server can shed another, and a shed one gives its back a tick later."""
FD_RESERVE = 2 * ACCEPT_BACKLOG + 64
"""File descriptors kept free of client connections: two accept bursts (one being shed, one
coming in), then the pool, the embedded server's pipes, SQS connections, logs, the
listener, the loop's own."""


def connection_limit(configured: int) -> tuple[int, int]:
    """(the connection limit, the soft file-descriptor limit). ``configured`` 0: the fd
    limit less ``FD_RESERVE`` (at least 8, at most 10,000)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if configured > 0:
        return configured, soft
    if soft == resource.RLIM_INFINITY:
        return 10_000, soft
    return max(8, min(10_000, soft - FD_RESERVE)), soft


def _check(s: Settings) -> None:
    for name in ("header_timeout", "body_timeout", "connection_log_seconds", "grace_seconds"):
        if not getattr(s, name) > 0:
            raise ConfigError(f"{name} must be a positive number of seconds")
    if s.max_connections < 0:
        raise ConfigError("max_connections must be 0 (from the fd limit) or more")


def local_secret(data_dir: str | os.PathLike[str], name: str) -> str:
    """A random secret kept in ``<data_dir>/<name>`` (mode 0600), made on first use."""
    path = Path(data_dir) / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


class Server:
    """Everything ``wahook serve`` runs, as one async context manager.

    >>> async with Server(settings) as server:
    ...     print(server.url)            # http://127.0.0.1:8080/webhook
    ...     await stop.wait()            # leaving drains and stops everything
    """

    def __init__(self, settings: Settings, *, out: TextIO | None = None) -> None:
        self.settings = settings
        self.out = out if out is not None else sys.stdout
        self.url = ""
        self.dsn: str | None = None
        self.app: ReceiverApp | None = None
        self.notes: dict[str, str] = {}
        self.credentials: Credentials = NO_CREDENTIALS
        self.pipeline_task: asyncio.Task[Any] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._runner: web.BaseRunner | None = None
        self._guard: GuardedServer | None = None
        self._embedded: Any = None
        self._deadline: float | None = None

    def stop_deadline(self) -> float:
        """The loop time by which stopping ends: ``grace_seconds`` after it began."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.settings.grace_seconds
        return self._deadline

    # --- start -----------------------------------------------------------------------

    async def __aenter__(self) -> Server:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    def _configured_secrets(self) -> tuple[str, tuple[str, ...]]:
        """The verify token and app secrets, made locally (and said so) when not set."""
        s = self.settings
        Path(s.data_dir).mkdir(parents=True, exist_ok=True)
        token = s.verify_token
        if token:
            self.notes["verify token"] = f"{token}  (WEBHOOK_VERIFY_TOKEN)"
        else:
            token = local_secret(s.data_dir, "verify_token")
            where = Path(s.data_dir, "verify_token")
            self.notes["verify token"] = f"{token}  (made for you, kept in {where})"
        app_secrets = s.app_secrets
        if app_secrets:
            self.notes["app secret"] = f"{len(app_secrets)} from WEBHOOK_SECRET"
        else:
            app_secrets = (local_secret(s.data_dir, "app_secret"),)
            self.notes["app secret"] = (
                "WEBHOOK_SECRET is not set, so Meta's POSTs will be refused (403) until it "
                "is; `wahook post` signs with the local test secret in "
                f"{Path(s.data_dir, 'app_secret')}"
            )
        return token, app_secrets

    async def _start(self) -> None:
        s = self.settings
        _check(s)
        token, app_secrets = self._configured_secrets()
        if s.queue_url:
            delivery = await self._sqs_delivery()
            self.dsn = s.dsn
        else:
            self.dsn = await self._database()
            delivery = await self._pipeline_delivery(self.dsn)
        credentials, refresh = await self._credentials()

        receiver = Receiver(
            verify_tokens=(token,),
            app_secrets=app_secrets,
            credentials=credentials,
            max_body_bytes=s.max_body_bytes,
        )
        self.app = ReceiverApp(receiver, delivery, refresh=refresh, body_timeout=s.body_timeout)
        limit, fds = connection_limit(s.max_connections)
        if limit > fds - FD_RESERVE:
            log.warning("max_connections_over_fd_limit max_connections=%d fd_limit=%d",
                        limit, fds)  # fmt: skip
        self.notes["connections"] = (
            f"at most {limit} (fd limit {fds}); a request head within {s.header_timeout:g} s, "
            f"its body within {s.body_timeout:g} s"
        )
        guard = GuardedServer(
            self.app.handle,
            header_timeout=s.header_timeout,
            limit=limit,
            log_seconds=s.connection_log_seconds,
            # After a 408 or 413, aiohttp reads and drops what the client still sends, so
            # it can read the answer before the close: 2 s is enough, not aiohttp's 10.
            lingering_time=min(2.0, s.header_timeout),
            **ReceiverApp.access_logger(),
        )
        runner = web.ServerRunner(guard, shutdown_timeout=s.grace_seconds)
        await runner.setup()
        self._runner = runner
        self._guard = guard
        guard.install()
        self._stack.push_async_callback(self._stop_http)
        site = web.TCPSite(runner, s.host, s.port, backlog=ACCEPT_BACKLOG)
        await site.start()
        host, port = self._bound(runner, s)
        self.url = f"http://{host}:{port}{WEBHOOK_PATH}"
        self._banner(host, port)

    @staticmethod
    def _bound(runner: web.BaseRunner, s: Settings) -> tuple[str, int]:
        for address in runner.addresses:
            if isinstance(address, tuple):
                host = address[0]
                return (f"[{host}]" if ":" in host else host), int(address[1])
        return s.host, s.port

    async def _sqs_delivery(self) -> Delivery:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        s = self.settings
        assert s.queue_url is not None
        client = await self._stack.enter_async_context(
            get_session().create_client(
                "sqs",
                **aws_client_args(s.aws_region, aws_endpoint_url(s.aws_endpoint_url, s.queue_url)),
                # Meta waits for the answer: fail fast (503, Meta retries), never hang.
                config=AioConfig(
                    connect_timeout=2,
                    read_timeout=5,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            )
        )
        planner = Planner(s.queue_url, max_message_bytes=s.sqs_max_message_bytes)
        self.notes["delivery"] = f"SQS queue {s.queue_url}"
        return SqsDelivery(AsyncForwarder(client, planner))

    async def _database(self) -> str:
        from wahook.sinks.migrate import migrate_dsn

        s = self.settings
        if s.dsn:
            dsn = s.dsn
            from wahook.runtime.logs import redact_text

            where = f"PostgreSQL at {redact_text(dsn)}"
        else:
            from wahook.sinks.embedded import EmbeddedPostgres

            pg = EmbeddedPostgres(s.data_dir)
            dsn = await asyncio.to_thread(pg.start)
            self._embedded = pg
            self._stack.push_async_callback(asyncio.to_thread, pg.stop)
            where = f"embedded PostgreSQL {dsn}, data in {pg.pgdata}"
        await migrate_dsn(dsn)
        self.notes["data"] = where
        if self._embedded is not None:
            from wahook.sinks.embedded import bin_dir

            psql = bin_dir() / "psql"
            self.notes["sql shell"] = f"{psql} {dsn}"
        return dsn

    async def _pool(self, dsn: str) -> Any:
        import asyncpg

        s = self.settings
        pool = await asyncpg.create_pool(dsn, min_size=s.pool_min, max_size=s.pool_max)

        async def close() -> None:
            # A pool whose server is unreachable may wait on its connections: bounded.
            left = self.stop_deadline() - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(pool.close(), max(0.1, left))
            except TimeoutError:
                pool.terminate()

        self._stack.push_async_callback(close)
        return pool

    async def _pipeline_delivery(self, dsn: str) -> Delivery:
        from wahook.runtime.inprocess import InProcessSource
        from wahook.runtime.pipeline import Pipeline
        from wahook.sinks.postgres import PostgresSink

        s = self.settings
        self._pg_pool = await self._pool(dsn)
        source = InProcessSource()
        # Meta waits for each answer while its body waits for its batch: cap the batch age.
        batching = s.replace(batch_max_age=min(s.batch_max_age, IN_PROCESS_MAX_AGE))
        pipeline = Pipeline.from_settings(source, PostgresSink(self._pg_pool), batching)
        task = asyncio.create_task(pipeline.run(), name="wahook-serve-pipeline")
        self.pipeline_task = task

        async def drain() -> None:
            # No more bodies: the pipeline commits what it holds and ends, within what is
            # left of the grace less a moment for the pool; then it is cancelled, and what
            # it had not committed was answered 503 (or will be, by the pipeline's source).
            source.close()
            loop = asyncio.get_running_loop()
            until = self.stop_deadline() - min(0.5, 0.1 * s.grace_seconds)
            done, _ = await asyncio.wait({task}, timeout=max(0.0, until - loop.time()))
            if not done:
                log.warning("pipeline_cut_off grace=%g", s.grace_seconds)
                task.cancel()
                await asyncio.wait({task}, timeout=max(0.1, self.stop_deadline() - loop.time()))
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                # It ended on its own: say why, and go on stopping.
                log.error("pipeline_failed error=%r", exc, exc_info=exc)

        self._stack.push_async_callback(drain)
        self.notes["delivery"] = (
            f"in-process pipeline: 200 once the body's batch is committed (batches of up to "
            f"{s.batch_size} events or {batching.batch_max_age * 1000:g} ms)"
        )
        return InProcessDelivery(source, ready=lambda: not task.done())

    async def _credentials(self) -> tuple[Credentials, Callable[[], Awaitable[bool]] | None]:
        if not self.dsn:
            self.notes["organizations"] = "no database configured: settings only"
            return NO_CREDENTIALS, None
        from wahook.receiver.credentials import OrgCredentials
        from wahook.sinks.queries import organization_secrets

        pool = getattr(self, "_pg_pool", None) or await self._pool(self.dsn)
        creds = OrgCredentials(lambda: organization_secrets(pool))
        await creds.refresh(force=True)
        self.credentials = creds
        task = asyncio.create_task(creds.keep_fresh(), name="wahook-serve-credentials")
        self._stack.callback(task.cancel)
        self.notes["organizations"] = (
            f"{creds.organizations} active; their verify tokens and app secrets are accepted"
        )
        return creds, creds.refresh

    def _banner(self, host: str, port: int) -> None:
        base = f"http://{host}:{port}"
        lines = [
            f"wahook serve: listening on {base}",
            f"  point Meta at:   https://<your public host>{WEBHOOK_PATH}  (forwarded to "
            f"{base}{WEBHOOK_PATH}; Meta needs HTTPS, e.g. a tunnel or a reverse proxy)",
            *(f"  {k + ':':<16} {v}" for k, v in self.notes.items()),
            f"  health:          {base}{HEALTH_PATH}  readiness: {base}{READY_PATH}",
            "  stop with Ctrl-C (what was accepted is stored first)",
        ]
        print("\n".join(lines), file=self.out, flush=True)

    # --- stop ------------------------------------------------------------------------

    async def _stop_http(self) -> None:
        """No new connections; idle ones closed; requests under way read, delivered and
        answered — until 2 s (a quarter of a short grace) before the deadline, when what
        is left is answered 503 and closed."""
        loop = asyncio.get_running_loop()
        deadline = self.stop_deadline()
        app, runner, guard = self.app, self._runner, self._guard
        if app is not None:
            app.stopping = True
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        if app is not None and guard is not None:
            under_way = guard.close_idle()
            log.info("serve_stopping in_flight=%d requests=%d", app.in_flight, under_way)
            answer_by = deadline - min(2.0, 0.25 * self.settings.grace_seconds)
            if self.pipeline_task is not None and self.pipeline_task.done():
                answer_by = loop.time()  # nothing will be stored: say so at once
            if not await guard.wait_closed(answer_by):
                app.cut_off(loop.time())
                # A moment for the 503s to go out, then close whatever is left.
                await guard.wait_closed(min(loop.time() + 0.5, max(loop.time() + 0.1, deadline)))
                guard.close_all()
            guard.uninstall()
        await runner.cleanup()

    def final_line(self, seconds: float) -> str:
        """What was accepted, stored (or queued) and not, for the last line printed."""
        app = self.app
        accepted, delivered = (app.accepted, app.delivered) if app is not None else (0, 0)
        word = "queued" if self.settings.queue_url else "stored"
        log.info("serve_stopped accepted=%d %s=%d not_%s=%d seconds=%.1f",
                 accepted, word, delivered, word, accepted - delivered, seconds)  # fmt: skip
        line = (
            f"wahook serve: stopped in {seconds:.1f} s; bodies accepted: {accepted}, "
            f"{word}: {delivered}, not {word}: {accepted - delivered}"
        )
        if accepted > delivered:
            line += (
                " (answered 503 or cut off unanswered: never acknowledged, so Meta sends "
                "them again)"
            )
        return line

    async def __aexit__(self, *exc: object) -> None:
        self.stop_deadline()
        await self._stack.aclose()


async def serve(settings: Settings, *, out: TextIO | None = None) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully (a second signal: at once)."""
    from wahook.runtime.signals import stop_on_signals

    stop = asyncio.Event()
    status = 0
    loop = asyncio.get_running_loop()
    with stop_on_signals(stop):
        async with Server(settings, out=out) as server:
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
            if server.pipeline_task is not None:
                waits.add(server.pipeline_task)
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for future in pending - {server.pipeline_task}:
                future.cancel()
            if server.pipeline_task in done:
                # The pipeline ended by itself (it cannot reach its database ...): stop
                # taking webhooks so a supervisor restarts us, rather than answer 503s.
                print("wahook serve: the pipeline stopped; stopping", file=sys.stderr)
                status = 1
            else:
                print("wahook serve: stopping, storing what was accepted ...",
                      file=out or sys.stdout, flush=True)  # fmt: skip
            began = loop.time()
        print(server.final_line(loop.time() - began), file=out or sys.stdout, flush=True)
    return status
