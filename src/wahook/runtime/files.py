"""The replay source: bodies from files, directories, JSONL and stdin.

- a ``.jsonl`` / ``.ndjson`` file, and stdin (``-``), hold one body per line;
- any other file is one body;
- a directory is walked (sorted) for ``.json``, ``.jsonl`` and ``.ndjson`` files.

Message ids are ``path`` or ``path:line``, so the summary can name what failed. Files are
read in a worker thread a batch at a time: memory stays flat whatever their size.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from wahook.runtime.source import BaseSource, Message

LINE_SUFFIXES = (".jsonl", ".ndjson")
DIR_SUFFIXES = (".json", *LINE_SUFFIXES)


def expand(paths: Sequence[str]) -> list[str]:
    """Directories replaced by the files they hold; ``-`` kept as is."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            out += sorted(
                str(f) for f in path.rglob("*") if f.is_file() and f.suffix in DIR_SUFFIXES
            )
        else:
            out.append(p)
    return out


def _lines(name: str, stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(stream, 1):
        body = line.rstrip(b"\r\n")
        if body.strip():
            yield f"{name}:{number}", body


class FileSource(BaseSource):
    def __init__(
        self, paths: Sequence[str], *, batch_max: int = 200, stdin: BinaryIO | None = None
    ) -> None:
        self.paths = expand(paths)
        self.batch_max = batch_max
        self.stdin = stdin
        self.total_bytes = sum(os.path.getsize(p) for p in self.paths if p != "-")
        self.read_bytes = 0
        self.failed: list[str] = []
        self._items = self._walk()

    def _walk(self) -> Iterator[tuple[str, bytes]]:
        for p in self.paths:
            if p == "-":
                yield from _lines("stdin", self.stdin or sys.stdin.buffer)
            elif p.endswith(LINE_SUFFIXES):
                with open(p, "rb") as f:
                    yield from _lines(p, f)
            else:
                with open(p, "rb") as f:
                    yield p, f.read()

    def _take(self) -> list[Message]:
        batch = []
        for id, body in self._items:
            self.read_bytes += len(body) + 1
            batch.append(Message(id=id, body=body))
            if len(batch) >= self.batch_max:
                break
        return batch

    async def next_batch(self) -> Sequence[Message] | None:
        batch = await asyncio.to_thread(self._take)
        return batch or None

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        self.failed += [m.id for m in batch if m.id in failed]
