"""Collector settings of a pipeline process (``wahook.runtime.tuning``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wahook.runtime.tuning import tune_gc
from wahook.settings import Settings

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "status_sent_pricing.json"


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_the_heap_and_raises_the_first_threshold(restore_gc: None) -> None:
    gc.unfreeze()
    assert tune_gc(12_345) is True
    assert gc.get_threshold() == (12_345, 20, 100)
    assert gc.get_freeze_count() > 0


def test_tune_gc_zero_changes_nothing(restore_gc: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert tune_gc(0) is False
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_the_threshold_comes_from_the_environment() -> None:
    assert Settings.from_env({}).gc_threshold == Settings().gc_threshold == 50_000
    assert Settings.from_env({"WAHOOK_GC_THRESHOLD": "0"}).gc_threshold == 0
    assert Settings.from_env({"WAHOOK_GC_THRESHOLD": "20000"}).gc_threshold == 20_000


@pytest.mark.parametrize(
    ("value", "expected"), [("30000", "(30000, 20, 100) True"), ("0", "(700, 10, 10) False")]
)
def test_wahook_replay_applies_the_setting(value: str, expected: str) -> None:
    """The CLI applies it at start-up (a fresh interpreter: the setting is process-wide)."""
    code = (
        "import gc, sys\n"
        "from wahook.cli import main\n"
        "rc = main(['replay', '--dry-run', '--any-organization', '--progress', 'never',"
        f" {str(FIXTURE)!r}])\n"
        "print(gc.get_threshold(), gc.get_freeze_count() > 0, rc)\n"
    )
    env = {**os.environ, "WAHOOK_GC_THRESHOLD": value}
    env.pop("WAHOOK_DSN", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"{expected} 0"
