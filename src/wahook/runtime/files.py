"""The replay source: bodies from files, directories, JSONL and stdin.

- a ``.jsonl`` / ``.ndjson`` file, and stdin (``-``), hold one body per line;
- any other file is one body;
- a JSON array (a whole file, or one line) is a list of bodies, each kept byte for byte;
- gzip is read as it is (``dump.jsonl.gz`` is JSONL, ``body.json.gz`` one body, gzipped
  stdin is JSONL);
- a directory is walked (sorted) for ``.json``, ``.jsonl`` and ``.ndjson`` files, gzipped
  or not.

What cannot be webhook bodies in any of these forms is refused before anything is read,
with the reason in one line (``InputError``): another compression (bzip2, xz, zstd, zip),
pretty-printed JSON in a one-body-per-line input, and several pretty-printed values one
after another (``jq .``'s output) in a one-body file. An input with no body at all is
refused too, so a script sees a non-zero status when nothing could be read. A line that is
simply not JSON is a body like any other: the pipeline quarantines it with its raw bytes.

Message ids are ``path``, ``path:line``, and ``path[i]`` / ``path:line[i]`` for the
bodies of an array, so the summary can name what failed. Files are read in a worker thread
a batch at a time: memory stays flat whatever the size of a JSONL file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import sys
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from wahook.errors import InputError
from wahook.runtime.source import BaseSource, Message

LINE_SUFFIXES = (".jsonl", ".ndjson")
GZIP_SUFFIX = ".gz"
DIR_SUFFIXES = tuple(s + z for s in (".json", *LINE_SUFFIXES) for z in ("", GZIP_SUFFIX))

GZIP_MAGIC = b"\x1f\x8b"
# Other formats a dump may come in, by their first bytes: what to run instead.
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"BZh", "bzip2-compressed: bzcat FILE | wahook replay -"),
    (b"\xfd7zXZ\x00", "xz-compressed: xzcat FILE | wahook replay -"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: zstdcat FILE | wahook replay -"),
    (b"PK\x03\x04", "a zip archive: unzip it and replay the directory"),
)
_PRETTY_HINT = (
    "pretty-printed JSON where one body per line is expected: "
    "compact it (jq -c . FILE | wahook replay -) or give it a .json name if it is one body"
)
_SEVERAL_HINT = (
    "several pretty-printed JSON values one after another, where one body is expected: "
    "compact them one per line (jq -c . FILE | wahook replay -)"
)
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


def expand(paths: Sequence[str]) -> list[str]:
    """Directories replaced by the files they hold; ``-`` kept as is."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            found = sorted(
                str(f) for f in path.rglob("*") if f.is_file() and f.name.endswith(DIR_SUFFIXES)
            )
            if not found:
                raise InputError(p, "no .json, .jsonl or .ndjson file here (gzipped or not)")
            out += found
        else:
            out.append(p)
    return out


def _is_lines(name: str) -> bool:
    return name == "-" or name.removesuffix(GZIP_SUFFIX).endswith(LINE_SUFFIXES)


@contextlib.contextmanager
def _open(name: str, stdin: BinaryIO) -> Iterator[BinaryIO]:
    """The input's bytes, gunzipped if they are gzip; other compressions are refused.
    Closes what it opened (never stdin)."""
    with contextlib.ExitStack() as stack:
        raw = stdin if name == "-" else stack.enter_context(open(name, "rb"))
        head = _peek(raw, 6)
        for magic, hint in _OTHER_FORMATS:
            if head.startswith(magic):
                raise InputError(_label(name), hint)
        if head.startswith(GZIP_MAGIC):
            raw = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[assignment]
        yield raw


def _peek(stream: BinaryIO, n: int) -> bytes:
    """The first ``n`` bytes without consuming them (a pipe cannot seek back)."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return bytes(peek(n)[:n])
    head = stream.read(n)
    stream.seek(0)
    return head


def _label(name: str) -> str:
    return "stdin" if name == "-" else name


def _looks_pretty(line: bytes) -> bool:
    """A first line that opens a JSON value without closing it: ``{``, ``[``, ``"a": 1,``."""
    text = line.strip()
    if not text or text[-1:] not in b"{[,":
        return False
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return True
    return False


def _bodies(id: str, body: bytes) -> Iterator[tuple[str, bytes]]:
    """One body, or each body of a JSON array (its bytes as they are in the input)."""
    if body.lstrip()[:1] == b"[":
        try:
            items = _ARRAY.decode(body)
        except msgspec.DecodeError:
            pass  # not an array after all: the pipeline quarantines it as it is
        else:
            for i, item in enumerate(items):
                yield f"{id}[{i}]", bytes(item)
            return
    yield id, body


def _lines(name: str, stream: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    first = True
    for number, line in enumerate(stream, 1):
        body = line.rstrip(b"\r\n")
        if not body.strip():
            continue
        if first and _looks_pretty(body):
            raise InputError(name, _PRETTY_HINT)
        first = False
        yield from _bodies(f"{name}:{number}", body)


def _values(data: bytes) -> int | None:
    """How many JSON values ``data`` holds one after another, or None if it is not that."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder, position, count = json.JSONDecoder(), 0, 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position == len(text):
            return count
        try:
            _, position = decoder.raw_decode(text, position)
        except ValueError:
            return None
        count += 1


def check(name: str) -> None:
    """Refuse ``name`` now, before anything is replayed, if it cannot be bodies."""
    with _open(name, sys.stdin.buffer) as stream:
        first = next((line for line in stream if line.strip()), b"")
        if not _looks_pretty(first):
            return
        if _is_lines(name):
            raise InputError(name, _PRETTY_HINT)
        # One pretty-printed body is fine; several one after another (what `jq .` prints
        # for a JSONL file) are not one body.
        if (_values(first + stream.read()) or 0) > 1:
            raise InputError(name, _SEVERAL_HINT)


class FileSource(BaseSource):
    def __init__(
        self, paths: Sequence[str], *, batch_max: int = 200, stdin: BinaryIO | None = None
    ) -> None:
        self.paths = expand(paths)
        self.batch_max = batch_max
        self.stdin = stdin
        for p in self.paths:
            if p != "-":
                check(p)
        self.total_bytes = sum(os.path.getsize(p) for p in self.paths if p != "-")
        self.read_bytes = 0
        self.failed: list[str] = []
        self.bodies = 0
        self._items = self._walk()

    def _walk(self) -> Iterator[tuple[str, bytes]]:
        for p in self.paths:
            try:
                with _open(p, self.stdin or sys.stdin.buffer) as stream:
                    if _is_lines(p):
                        yield from _lines(_label(p), stream)
                    else:
                        yield from _bodies(p, stream.read())
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                # What came before the damage is replayed; a second run after a fix skips it.
                raise InputError(_label(p), f"damaged gzip data ({exc})") from None
        if not self.bodies:
            raise InputError(", ".join(map(_label, self.paths)), "no webhook body to replay")

    def _take(self) -> list[Message]:
        batch = []
        for id, body in self._items:
            self.read_bytes += len(body) + 1
            self.bodies += 1
            batch.append(Message(id=id, body=body))
            if len(batch) >= self.batch_max:
                break
        return batch

    async def next_batch(self) -> Sequence[Message] | None:
        batch = await asyncio.to_thread(self._take)
        return batch or None

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        self.failed += [m.id for m in batch if m.id in failed]
