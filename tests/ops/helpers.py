"""Running the `wahook` CLI as a user does: subprocesses, their output, their exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

WAHOOK = str(Path(sys.executable).with_name("wahook"))

VERIFY_TOKEN = "verify-tok-Zq81x"
APP_SECRET = "app-secret-Kp20w"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(*, aws: bool = True, **extra: str) -> dict[str, str]:
    """The environment without wahook's variables; ``aws=False`` drops AWS credentials too
    (a newcomer's shell), with the metadata lookup disabled in case anything tried it."""
    drop = ("WAHOOK_", "DB_", "WEBHOOK_", "SQS_", "PHONE_NUMBER_ID", "BUSINESS_ACCOUNT_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if not aws:
        env = {k: v for k, v in env.items() if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra)
    return env


def secrets_env(**extra: str) -> dict[str, str]:
    return cli_env(**{"WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN, "WEBHOOK_SECRET": APP_SECRET, **extra})


def run(
    *args: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WAHOOK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 120.0) -> str:
    """stdout up to ``marker``, or fail after ``timeout`` (with what stderr said)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in out:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"no {marker!r} (timeout or exit): {out.decode()} {err[-3000:]}")
        out += chunk
    return out.decode()


@contextlib.contextmanager
def background(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, stop: int = signal.SIGINT
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running command, stopped with ``stop`` (then killed after 30 s)."""
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def serving(workdir: Path, *args: str, env: dict[str, str]) -> Iterator[str]:
    """`wahook serve ARGS` on a free port; yields its webhook URL."""
    port = free_port()
    argv = [WAHOOK, "serve", "--port", str(port), *args]
    with background(argv, env, cwd=workdir) as proc:
        read_until(proc, "  stop with")
        yield f"http://127.0.0.1:{port}/webhook"


def dlq_of(sqs_client: Any, url: str) -> str:
    """The dead-letter queue URL of ``url``'s redrive policy."""
    attrs = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    name = json.loads(attrs["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[1]
    return str(sqs_client.get_queue_url(QueueName=name)["QueueUrl"])
