"""Lone surrogate escapes (``"\\ud800"``): stand-ins msgspec can read, and the way back.

JSON lets a string spell a lone UTF-16 surrogate as an escape; ``json.loads`` decodes it,
msgspec refuses the whole document. Rather than reading such a body another way (which
re-encoded every item and could not match msgspec on keys, numbers or nesting), each
lone surrogate escape is swapped for a six-byte escape of a code point the body does not
use at all (a *stand-in*), so the body keeps its length and every byte offset, and the
ordinary decoder reads it. Afterwards:

- raw bytes are put back exactly (``raw``): a stand-in escape can only come from the swap;
- decoded strings get their lone surrogates back (``text``, ``struct``).

Parts of the body without a lone surrogate are byte for byte what they were, so they decode
exactly as they would in a body without one. A surrogate *pair* (``"\\ud83d\\ude00"``) is
valid JSON that msgspec reads: it is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeVar, overload

import msgspec

from wahook.errors import DecodeError

T = TypeVar("T")

# An escaped backslash (skipped, so that "\\ud800" is not read as an escape), a valid
# surrogate pair (kept), or a lone surrogate escape (group 1, without its backslash). Each
# pattern starts with the one literal backslash: re then skips ahead to backslashes only.
_LONE = re.compile(
    rb"\\(?:\\|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(u[dD][89a-fA-F][0-9a-fA-F]{2}))"
)
# Any \u escape (group 1: its hex digits), escaped backslashes skipped.
_ESCAPE = re.compile(rb"\\(?:\\|u([0-9a-fA-F]{4}))")
# A stand-in as this module spells it: lower-case hex.
_STAND_IN = re.compile(rb"\\(?:\\|u[0-9a-f]{4})")


def _candidates() -> Iterator[int]:
    """Code points to use as stand-ins: the private use area first, then the rest of the
    basic plane (never surrogates, never ASCII)."""
    yield from range(0xE000, 0xF900)
    yield from range(0x0100, 0xD800)
    yield from range(0xF900, 0x10000)


class StandIns:
    """A body with its lone surrogate escapes swapped for stand-ins (``data``)."""

    __slots__ = ("_back", "_table", "data")

    def __init__(self, data: bytes, back: dict[bytes, bytes], table: dict[int, int]) -> None:
        self.data = data
        self._back = back  # stand-in escape -> the escape as it was spelled in the body
        self._table = table  # stand-in code point -> the lone surrogate

    @classmethod
    def of(cls, data: bytes) -> StandIns | None:
        """``data`` with stand-ins, or None when it has no lone surrogate escape. Raises
        ``DecodeError`` for a body built to leave no code point free to stand in."""
        spellings = {b"\\" + m.group(1) for m in _LONE.finditer(data) if m.group(1) is not None}
        if not spellings:
            return None
        used = {int(h, 16) for h in _ESCAPE.findall(data) if h}
        if not data.isascii():
            used.update(map(ord, set(data.decode("utf-8", "replace"))))
        free = (cp for cp in _candidates() if cp not in used)
        back: dict[bytes, bytes] = {}
        forth: dict[bytes, bytes] = {}
        table: dict[int, int] = {}
        for spelling in sorted(spellings):
            cp = next(free, None)
            if cp is None:
                raise DecodeError(
                    "lone surrogate escapes in a body that leaves no code point free to "
                    "stand in for them while it is decoded"
                )
            stand_in = b"\\u%04x" % cp
            forth[spelling], back[stand_in] = stand_in, spelling
            table[cp] = int(spelling[2:], 16)

        def swap(m: re.Match[bytes]) -> bytes:
            lone = m.group(1)
            return m.group(0) if lone is None else forth[b"\\" + lone]

        return cls(_LONE.sub(swap, data), back, table)

    def raw(self, raw: bytes) -> bytes:
        """The bytes ``raw`` (a slice of ``data`` that starts outside any string) was."""
        back = self._back
        if len(back) < 8 and not any(stand_in in raw for stand_in in back):
            return raw  # the common case: one or two spellings, neither in this part
        new = _STAND_IN.sub(lambda m: back.get(m.group(0), m.group(0)), raw)
        return raw if new == raw else new

    @overload
    def text(self, value: str) -> str: ...
    @overload
    def text(self, value: None) -> None: ...
    @overload
    def text(self, value: str | None) -> str | None: ...

    def text(self, value: str | None) -> str | None:
        """A string decoded from ``data`` with its lone surrogates back."""
        if value is None or value.isascii():
            return value
        new = value.translate(self._table)
        return value if new == value else new

    def struct(self, obj: T) -> T:
        """A Struct decoded from ``data`` with the lone surrogates of its strings back (the
        same object when it holds none). Raises ``msgspec.ValidationError`` if the Struct
        does not take its own strings back, which its types never do."""
        if obj is None or msgspec.json.encode(obj).isascii():  # stand-ins are not ASCII
            return obj
        built = msgspec.to_builtins(obj)
        fixed = self._strings(built)
        if fixed is built:
            return obj
        return msgspec.convert(fixed, type(obj))

    def _strings(self, obj: Any) -> Any:
        """``obj`` (builtins) with its strings translated; ``obj`` itself if none changed."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, list):
            items = [self._strings(v) for v in obj]
            return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
        if isinstance(obj, dict):
            values = {k: self._strings(v) for k, v in obj.items()}
            return obj if all(values[k] is v for k, v in obj.items()) else values
        return obj
