"""Shared fixtures live in tests/plugins/ (one module per real service). ``network`` comes
first: it guards every connection and sets fake AWS credentials before anything runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.plugins.network",
    "tests.plugins.postgres",
    "tests.plugins.sqs",
    "tests.plugins.aws",
]


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Each test leaves os.environ as it found it. The Lambda handlers' cold start writes
    what it read from Secrets Manager/SSM into os.environ itself (as on Lambda), which
    monkeypatch cannot undo: a later test would inherit a dropped test database as
    WAHOOK_DSN."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
