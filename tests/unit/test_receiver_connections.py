"""`wahook serve`'s connection guard: counted log lines, the loop's exception handler, the
connection limit from the fd limit, and the settings and flags that configure them."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import pytest

from wahook.cli import build_parser
from wahook.errors import ConfigError
from wahook.receiver.connections import GuardedServer, Tally
from wahook.receiver.serve import FD_RESERVE, _check, connection_limit
from wahook.settings import Settings


def pressure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("http_pressure")]


async def test_a_burst_becomes_one_line_per_interval_with_every_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "wahook.receiver")
    tally = Tally(0.2, lambda: "open=3 limit=8")
    began = time.monotonic()
    for _ in range(60):  # ~0.6 s of 10 failures every 10 ms
        for _ in range(10):
            tally.add("accept_errors", "[Errno 24] Too many open files")
        tally.add("evicted")
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - began
    tally.flush()
    lines = pressure_lines(caplog)
    assert 2 <= len(lines) <= elapsed / 0.2 + 2
    counted = sum(int(part.split("=")[1]) for line in lines for part in line.split()
                  if part.startswith("accept_errors="))  # fmt: skip
    assert counted == 600
    assert tally.totals == {"accept_errors": 600, "evicted": 60}
    assert all(line.endswith("error=[Errno 24] Too many open files") for line in lines)
    assert all("open=3 limit=8" in line for line in lines)
    tally.flush()  # nothing new: no line
    assert len(pressure_lines(caplog)) == len(lines)


async def test_failed_accepts_are_counted_and_other_loop_errors_pass_on() -> None:
    loop = asyncio.get_running_loop()
    passed_on: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: passed_on.append(context))
    guard = GuardedServer(lambda request: None, header_timeout=1, limit=4, log_seconds=60)
    guard.install()
    try:
        emfile = OSError(24, "Too many open files")
        for _ in range(100):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": emfile}
            )
        loop.call_exception_handler({"message": "something else"})
        assert guard.tally.totals == {"accept_errors": 100}
        assert [c["message"] for c in passed_on] == ["something else"]
    finally:
        guard.uninstall()
        loop.set_exception_handler(None)


def test_connection_limit_leaves_room_under_the_fd_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit, fds = connection_limit(0)
    assert fds == soft
    if soft != resource.RLIM_INFINITY:
        assert limit == max(8, min(10_000, soft - FD_RESERVE))
    assert connection_limit(5000) == (5000, soft)  # as configured, even over the fd limit


def test_settings_and_flags() -> None:
    env = {"WAHOOK_HEADER_TIMEOUT": "1.5", "WAHOOK_BODY_TIMEOUT": "2",
           "WAHOOK_MAX_CONNECTIONS": "300", "WAHOOK_CONNECTION_LOG_SECONDS": "0.5"}  # fmt: skip
    s = Settings.from_env(env)
    assert (s.header_timeout, s.body_timeout, s.max_connections, s.connection_log_seconds) == (
        1.5, 2.0, 300, 0.5)  # fmt: skip
    d = Settings.from_env({})
    assert (d.header_timeout, d.body_timeout, d.max_connections) == (10.0, 30.0, 0)
    with pytest.raises(ConfigError, match="WAHOOK_BODY_TIMEOUT"):
        Settings.from_env({"WAHOOK_BODY_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="header_timeout"):
        _check(Settings(header_timeout=0))
    with pytest.raises(ConfigError, match="max_connections"):
        _check(Settings(max_connections=-1))
    flags = "--header-timeout 1 --body-timeout 2 --max-connections 50 --connection-log-seconds 3"
    args = build_parser().parse_args(["serve", *flags.split()])
    assert (args.header_timeout, args.body_timeout, args.max_connections,
            args.connection_log_seconds) == (1.0, 2.0, 50, 3.0)  # fmt: skip
