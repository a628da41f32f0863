"""SQL kept as named text: every statement the sinks run lives in ``sinks/sql/*.sql``,
loaded once with ``importlib.resources``. Values always travel as parameters."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load(name: str) -> str:
    """The text of ``sinks/sql/<name>.sql`` (``name`` may hold a ``/``)."""
    path = resources.files("wahook.sinks").joinpath("sql").joinpath(f"{name}.sql")
    return path.read_text("utf-8")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration shipped, in version order."""
    found = []
    for entry in resources.files("wahook.sinks").joinpath("sql").joinpath("migrations").iterdir():
        stem, dot, ext = entry.name.partition(".")
        if ext != "sql" or not dot:
            continue
        number, _, title = stem.partition("_")
        found.append((int(number), title, entry.read_text("utf-8")))
    return sorted(found)
