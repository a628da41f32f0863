"""HTTP abuse against a running `wahook serve`: slow and idle clients, floods under a low
file-descriptor limit, oversized bodies with and without `Expect`, stops with requests in
flight and during a database outage. Loopback only; every wait is bounded.

The fd-limit, stop and outage tests run `wahook serve` as a subprocess (its own fd limit,
real signals); the timeout and `Expect` tests run ``Server`` in this process on a real
socket. Both store into a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.integration.test_receiver_http import count
from wahook.parse import sign
from wahook.receiver import samples
from wahook.receiver.serve import Server
from wahook.settings import Settings

WAHOOK = str(Path(sys.executable).with_name("wahook"))
TOKEN = "abuse-token-41c0"
SECRET = "abuse-secret-9e7d"


# --- raw HTTP over loopback ------------------------------------------------------------


def post_head(body_length: int, *, signature: str = "", expect: bool = False) -> bytes:
    lines = [
        "POST /webhook HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {body_length}",
    ]
    if signature:
        lines.append(f"X-Hub-Signature-256: {signature}")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def signed_post(body: bytes) -> bytes:
    return post_head(len(body), signature=sign(body, SECRET)) + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response: (status, body); the body by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


async def exchange(port: int, request: bytes, within: float = 30.0) -> tuple[int, bytes]:
    async with asyncio.timeout(within), connect(port) as (reader, writer):
        writer.write(request)
        await writer.drain()
        return await read_response(reader)


async def closed_after(reader: asyncio.StreamReader, start: float, limit: float) -> float | None:
    """Seconds from ``start`` until the server closed (EOF or reset); None if still open
    after ``limit`` seconds. Whatever the server sent meanwhile is read and dropped."""
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - start


# --- `wahook serve` as a subprocess ----------------------------------------------------


async def poll(check: Callable[[], bool], within: float) -> None:
    """Wait until ``check()`` holds, or fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110  # a file another process writes: no event
            await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`wahook serve` in a subprocess with its own fd limit; stdout and stderr go to files
    (a pipe nobody reads would stall a server that logs)."""

    def __init__(self, workdir: Path, dsn: str, *, fd_limit: int | None = None,
                 **env: str) -> None:  # fmt: skip
        self.workdir = workdir
        self.port = free_port()
        self.fd_limit = fd_limit
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("WAHOOK_", "DB_", "WEBHOOK_", "SQS_"))}  # fmt: skip
        self.env.update(WAHOOK_DSN=dsn, WEBHOOK_VERIFY_TOKEN=TOKEN, WEBHOOK_SECRET=SECRET,
                        WAHOOK_LOG_FORMAT="json", WAHOOK_DATA_DIR=str(workdir / "data"),
                        **env)  # fmt: skip
        self.out = workdir / "stdout"
        self.err = workdir / "stderr"
        self.proc: asyncio.subprocess.Process | None = None

    def _limit_fds(self) -> None:  # in the child, before exec
        if self.fd_limit is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, hard))

    async def start(self) -> Serve:
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                WAHOOK, "serve", "--port", str(self.port), cwd=self.workdir, env=self.env,
                stdout=out, stderr=err, preexec_fn=self._limit_fds,
            )  # fmt: skip
        async with asyncio.timeout(120):
            while "  stop with" not in self.stdout():
                if self.proc.returncode is not None:
                    pytest.fail(f"serve exited: {self.stdout()} {self.stderr()[-3000:]}")
                await asyncio.sleep(0.05)
        return self

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    async def wait_for_event(self, name: str) -> None:
        await poll(lambda: any(e.get("event") == name for e in self.events()), within=30)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait(self, within: float = 60.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(within):
            return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def serve_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Serve]]:
    made: list[Serve] = []

    def make(dsn: str, **kw: object) -> Serve:
        workdir = tmp_path / f"serve{len(made)}"
        workdir.mkdir()
        made.append(Serve(workdir, dsn, **kw))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for s in made:
        await s.kill()


async def hold(
    port: int, n: int, first: bytes, connect_timeout: float = 5.0
) -> list[asyncio.StreamWriter]:
    """``n`` connections that each send ``first`` and then nothing; the ones that could not
    connect in time are left out (a server out of descriptors stops accepting)."""
    gate = asyncio.Semaphore(64)

    async def one() -> asyncio.StreamWriter | None:
        async with gate:
            try:
                async with asyncio.timeout(connect_timeout):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
            except (OSError, TimeoutError):
                return None
            writer.write(first)  # into the socket buffer: no wait
            return writer

    writers = await asyncio.gather(*(one() for _ in range(n)))
    return [w for w in writers if w is not None]


def release(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.transport.abort()


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    """This process holds the flood's client ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 and (hard == resource.RLIM_INFINITY or hard > soft):
        limit = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


# --- floods under a low fd limit -------------------------------------------------------


@pytest.mark.slow
async def test_flood_of_idle_connections_leaves_room_for_a_signed_post(
    serve_factory: Callable[..., Serve], db_dsn: str
) -> None:
    # Timeouts far longer than the test: only the connection limit can make room.
    serve = await serve_factory(db_dsn, fd_limit=256, WAHOOK_HEADER_TIMEOUT="60",
                                WAHOOK_BODY_TIMEOUT="60",
                                WAHOOK_CONNECTION_LOG_SECONDS="1").start()  # fmt: skip
    # The attack: a head that promises a body, then nothing; then idle ones.
    flood = await hold(serve.port, 600, post_head(1000, signature="sha256=" + "0" * 64))
    flood += await hold(serve.port, 300, b"")
    try:
        assert len(flood) > 256  # more than the server could hold at once
        body = samples.sample(messages=2, statuses=1, start=300)
        assert await exchange(serve.port, signed_post(body), within=20) == (
            200, b"EVENT_RECEIVED")  # fmt: skip
    finally:
        release(flood)
    assert await count(db_dsn, "SELECT count(*) FROM webhook_events") == 3
    serve.signal(signal.SIGTERM)
    assert await serve.wait() == 0  # the last counts are logged on the way out
    pressure = [e for e in serve.events() if e.get("event") == "http_pressure"]
    shed = sum(int(str(e.get(k, 0))) for e in pressure for k in ("evicted", "refused"))
    assert shed >= len(flood) - 64
    assert not any("accept_errors" in e for e in pressure)  # the limit kept fds free
    assert "connections:     at most 64 (fd limit 256)" in serve.stdout()
    assert "Traceback" not in serve.stderr()


@pytest.mark.slow
async def test_failed_accepts_are_logged_as_counts(
    serve_factory: Callable[..., Serve], db_dsn: str
) -> None:
    # A connection limit over the fd limit: accept() itself fails (EMFILE).
    serve = await serve_factory(db_dsn, fd_limit=256, WAHOOK_MAX_CONNECTIONS="2000",
                                WAHOOK_HEADER_TIMEOUT="60",
                                WAHOOK_CONNECTION_LOG_SECONDS="1").start()  # fmt: skip
    began = time.monotonic()
    flood = await hold(serve.port, 400, b"", connect_timeout=2)
    try:
        await poll(lambda: "Too many open files" in serve.stderr(), within=30)
        await asyncio.sleep(2)  # let asyncio retry accept() a few more times
        lines = serve.stderr().splitlines()
        seconds = time.monotonic() - began
    finally:
        release(flood)
    # Nothing per failed accept ...
    others = [line for line in lines if '"http_pressure"' not in line]
    assert len(others) < 20, others[:20]
    # ... but one line of counts per second at most (and one at once).
    pressure = [json.loads(line) for line in lines if '"http_pressure"' in line]
    assert sum(int(str(e.get("accept_errors", 0))) for e in pressure) > 0
    assert "Too many open files" in str(pressure[0].get("error"))
    assert len(pressure) <= seconds + 2, (len(pressure), seconds)
    assert "Traceback" not in serve.stderr()
    # The flood gone, the server takes webhooks again.
    body = samples.sample(messages=1, statuses=0, start=400)
    assert (await exchange(serve.port, signed_post(body), within=20))[0] == 200
    serve.signal(signal.SIGTERM)
    assert await serve.wait() == 0


# --- timeouts and `Expect` (in this process, a real socket) ----------------------------


@pytest.fixture
async def server(db_dsn: str, tmp_path: Path) -> AsyncIterator[Server]:
    settings = Settings(dsn=db_dsn, verify_token=TOKEN, app_secrets=(SECRET,), port=0,
                        data_dir=str(tmp_path), batch_max_age=0.02, grace_seconds=5.0,
                        header_timeout=1.0, body_timeout=1.0, max_body_bytes=10_000)  # fmt: skip
    async with Server(settings, out=io.StringIO()) as srv:
        yield srv


def port_of(server: Server) -> int:
    return int(urlsplit(server.url).port or 0)


async def test_slow_and_idle_clients_are_closed_after_their_timeouts(server: Server) -> None:
    port = port_of(server)
    timeout = 1.0  # the server's header and body timeouts

    async def silent() -> float | None:
        start = time.monotonic()
        async with connect(port) as (reader, _):
            return await closed_after(reader, start, 3 * timeout)

    async def slow_head() -> float | None:  # a byte of a head every 0.1 s
        start = time.monotonic()
        async with connect(port) as (reader, writer):
            head = post_head(10)
            for i in range(40):  # 4 s at most
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(head[i : i + 1])
                await asyncio.sleep(0.1)
            return await closed_after(reader, start, 3 * timeout)

    async def no_body() -> tuple[float, int, float | None]:  # a body promised, never sent
        async with connect(port) as (reader, writer):
            writer.write(post_head(500, signature="sha256=" + "0" * 64))
            start = time.monotonic()
            async with asyncio.timeout(3 * timeout):
                status, _ = await read_response(reader)
            answered = time.monotonic() - start
            return answered, status, await closed_after(reader, start + answered, 3 * timeout)

    async def kept_alive() -> float | None:  # idle after an answer
        async with connect(port) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await read_response(reader) == (200, b"ok")
            return await closed_after(reader, time.monotonic(), 3 * timeout)

    body = samples.sample(messages=1, statuses=1, start=10)
    results = await asyncio.gather(silent(), slow_head(), no_body(), kept_alive(),
                                   exchange(port, signed_post(body)))  # fmt: skip
    quiet, slow, (waited, status, after_408), idle, legit = results
    assert legit == (200, b"EVENT_RECEIVED")
    for closed in (quiet, slow, idle):
        assert closed is not None, "still open after 3x the timeout"
        assert 0.9 * timeout <= closed < 2 * timeout
    assert status == 408
    assert 0.9 * timeout <= waited < 2 * timeout
    assert after_408 is not None
    assert after_408 < 2 * timeout


async def expect_exchange(port: int, head: bytes, body: bytes) -> tuple[bytes, int, bytes]:
    """Send ``head``; on ``100 Continue`` send ``body``. (what came first, status, body)."""
    async with asyncio.timeout(10), connect(port) as (reader, writer):
        writer.write(head)
        await writer.drain()
        first = await reader.readuntil(b"\r\n\r\n")
        if first.startswith(b"HTTP/1.1 100"):
            writer.write(body)
            await writer.drain()
            status, answer = await read_response(reader)
            return first, status, answer
        status = int(first.split(b" ", 2)[1])
        return first, status, b""


async def test_oversized_post_is_refused_without_100_continue(server: Server) -> None:
    port = port_of(server)
    big = b"x" * 20_000  # the limit is 10,000
    for expect in (True, False):
        head = post_head(len(big), signature=sign(big, SECRET), expect=expect)
        first, status, _ = await expect_exchange(port, head, big)
        assert status == 413
        assert first.startswith(b"HTTP/1.1 413"), first  # no 100 Continue came before
        assert b"100 Continue" not in first
    # A body that fits gets its 100 Continue, then its 200.
    body = samples.sample(messages=1, statuses=0, start=20)
    head = post_head(len(body), signature=sign(body, SECRET), expect=True)
    first, status, answer = await expect_exchange(port, head, body)
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (status, answer) == (200, b"EVENT_RECEIVED")


# --- stopping ---------------------------------------------------------------------------


async def listener_closed(port: int, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            writer.transport.abort()
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_sigterm_answers_and_stores_bodies_still_arriving(
    serve_factory: Callable[..., Serve], db_dsn: str
) -> None:
    serve = await serve_factory(db_dsn, WAHOOK_GRACE_SECONDS="10").start()
    bodies = [samples.sample(messages=3, statuses=1, start=700 + 10 * i) for i in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(connect(serve.port)) for _ in range(5)]
        for reader, writer in conns:  # accepted, kept alive
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await read_response(reader) == (200, b"ok")
        idle, busy = conns[0], conns[1:]
        requests = [signed_post(body) for body in bodies]
        halves = [len(r) - len(b) // 2 for r, b in zip(requests, bodies, strict=True)]
        for (_, writer), request, half in zip(busy, requests, halves, strict=True):
            writer.write(request[:half])  # the head and half the body
        await asyncio.sleep(0.2)  # the server reads them
        serve.signal(signal.SIGTERM)
        await listener_closed(serve.port)  # the stop is under way: no new connections
        # The idle connection is closed; the ones with a request under way are not.
        assert await closed_after(idle[0], time.monotonic(), 10) is not None
        for (_, writer), request, half in zip(busy, requests, halves, strict=True):
            writer.write(request[half:])
        async with asyncio.timeout(10):
            answers = await asyncio.gather(*(read_response(reader) for reader, _ in busy))
        assert answers == [(200, b"EVENT_RECEIVED")] * len(bodies)
    assert await serve.wait(within=30) == 0
    assert await count(db_dsn, "SELECT count(*) FROM webhook_events") == 4 * len(bodies)
    assert "bodies accepted: 4, stored: 4, not stored: 0" in serve.stdout()


class Proxy:
    """A loopback TCP proxy to PostgreSQL that the test can cut (the shared server is
    never touched)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()


@pytest.mark.slow
async def test_stop_during_a_database_outage_takes_one_grace_and_says_what_was_lost(
    serve_factory: Callable[..., Serve], db_dsn: str
) -> None:
    grace = 4.0
    parts = urlsplit(db_dsn)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    proxied = urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))
    serve = await serve_factory(proxied, WAHOOK_GRACE_SECONDS=str(grace)).start()
    stored = samples.sample(messages=1, statuses=0, start=800)
    assert await exchange(serve.port, signed_post(stored)) == (200, b"EVENT_RECEIVED")
    proxy.cut()
    lost = samples.sample(messages=1, statuses=0, start=900)
    answer = asyncio.create_task(exchange(serve.port, signed_post(lost), within=60))
    await serve.wait_for_event("sink_retry")  # the body is in, its batch cannot commit
    assert not answer.done()
    began = time.monotonic()
    serve.signal(signal.SIGINT)
    code = await serve.wait(within=10 * grace)
    took = time.monotonic() - began
    assert (await answer)[0] == 503  # answered before the end: Meta retries it
    assert code == 0
    # One grace (not two), with a little for the interpreter to exit.
    assert took < 1.5 * grace, took
    last = serve.stdout().strip().splitlines()[-1]
    assert "bodies accepted: 2, stored: 1, not stored: 1" in last
    assert "Meta sends them again" in last
    assert await count(db_dsn, "SELECT count(*) FROM webhook_events") == 1
