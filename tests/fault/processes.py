"""``wahook serve`` / ``wahook worker`` as real subprocesses that a fault test can SIGKILL
and start again.

Each process leads its own process group (``start_new_session``), so a kill reaches
anything it started, and ``ProcessSet`` kills every group it ever started when it is left —
a failing test leaves nothing running. Logs go to one file per start (never a pipe a dead
reader could fill), and their tails are what an assertion message shows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

WAHOOK = [sys.executable, "-m", "wahook.cli"]
STOP_TIMEOUT = 30.0  # seconds a SIGTERM-ed process gets before it is killed


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any wahook setting of the caller's, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WAHOOK_", "DB_", "WEBHOOK_", "SQS_"))
    }
    env.update(extra)
    return env


class Managed:
    """One named role (``serve``, ``worker-2``) whose process can be killed and restarted."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.logs = logs
        self.starts = 0
        self.kills = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_paths: list[Path] = []

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self.starts += 1
        path = self.logs / f"{self.name}.{self.starts}.log"
        self.log_paths.append(path)
        with path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group: no handler runs, nothing is flushed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.kills += 1
        _kill_group(self.proc)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited already
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
        _kill_group(self.proc)  # anything it left in its group
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        text = ""
        for path in self.log_paths[-2:]:
            if path.exists():
                text += f"--- {path.name}\n" + path.read_text(errors="replace")[-chars:]
        return text


class ProcessSet:
    """Every managed role of a test; ``with ProcessSet(dir) as procs:`` kills them all on
    the way out, whatever happened."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.roles: list[Managed] = []

    def add(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Managed:
        role = Managed(name, argv, env, self.logs)
        self.roles.append(role)
        return role

    def tails(self) -> str:
        return "\n".join(role.tail() for role in self.roles)

    def __enter__(self) -> ProcessSet:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for role in self.roles:
            if role.proc is not None:
                _kill_group(role.proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited already
        os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
