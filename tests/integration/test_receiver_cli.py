"""The `wahook serve` command as a newcomer runs it: no DSN, no queue, embedded PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

WAHOOK = str(Path(sys.executable).with_name("wahook"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are 0700, and as root the embedded server runs
    # as an unprivileged user that must reach the data directory.
    path = Path(tempfile.mkdtemp(prefix="wahook-serve-cli-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WAHOOK_", "DB_", "WEBHOOK_", "SQS_"))}  # fmt: skip
    env.update(extra)
    return env


def read_banner(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    """stdout up to the banner's last line, or fail after ``timeout``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while b"  stop with" not in out:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"no banner (timeout or exit): {out.decode()} {err[-3000:]}")
        out += chunk
    return out.decode()


def test_help_has_examples() -> None:
    for command in ("serve", "post"):
        out = subprocess.run([WAHOOK, command, "--help"], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        assert "examples:" in out


def test_serve_embedded_default_end_to_end(workdir: Path) -> None:
    port = free_port()
    env = clean_env()
    proc = subprocess.Popen(
        [WAHOOK, "serve", "--port", str(port)], cwd=workdir, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        text = read_banner(proc)
        assert f"listening on http://127.0.0.1:{port}" in text
        token = (workdir / ".wahook" / "verify_token").read_text().strip()
        assert f"verify token:    {token}" in text
        assert "embedded PostgreSQL postgresql://" in text
        assert str(workdir / ".wahook" / "pgdata") in text
        assert (workdir / ".wahook" / "pgdata" / "PG_VERSION").exists()
        [shell] = [line for line in text.splitlines() if "sql shell:" in line]
        psql = Path(shell.split("sql shell:", 1)[1].split()[0])
        assert psql.name == "psql"
        assert psql.is_file()
        url = f"http://127.0.0.1:{port}/webhook"
        post = subprocess.run(
            [WAHOOK, "post", "--sample", "--messages", "2", "--statuses", "1", "--url", url],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert post.returncode == 0, post.stderr
        assert post.stdout.startswith("200 EVENT_RECEIVED")
        stats = subprocess.run(
            [WAHOOK, "stats", "--embedded", "--json"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        counts = json.loads(stats.stdout)["counts"]
        assert counts["webhook_events"] == 3  # no organization yet: kept, unrouted
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, raw_err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    err = raw_err.decode()
    assert proc.returncode == 0, err
    token_text = (workdir / ".wahook" / "verify_token").read_text().strip()
    secret = (workdir / ".wahook" / "app_secret").read_text().strip()
    assert secret not in err
    assert token_text not in err
    assert oct((workdir / ".wahook" / "app_secret").stat().st_mode & 0o777) == "0o600"
    # The embedded server was stopped with the command.
    deadline = time.monotonic() + 10
    while (workdir / ".wahook" / "pgdata" / "postmaster.pid").exists():
        assert time.monotonic() < deadline, "embedded PostgreSQL still running"
        time.sleep(0.1)


def test_serve_refuses_a_taken_port(workdir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        queue = "http://127.0.0.1:9/123456789012/q"  # queue mode: no database to start
        out = subprocess.run(
            [WAHOOK, "serve", "--port", str(port), "--queue-url", queue],
            cwd=workdir, env=clean_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1
    assert "wahook serve:" in out.stderr
    with contextlib.suppress(FileNotFoundError):
        assert not (workdir / ".wahook" / "pgdata").exists()


def test_serve_says_why_when_the_database_is_unreachable(workdir: Path) -> None:
    out = subprocess.run(
        [WAHOOK, "serve", "--port", str(free_port()), "--dsn", "postgresql://postgres@127.0.0.1:9/x"],
        cwd=workdir, env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith("wahook serve:")
    assert "Traceback" not in out.stderr
