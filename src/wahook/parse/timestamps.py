"""One rule for every timestamp Meta sends.

Meta writes Unix seconds as JSON strings (``"1749416383"``) on messages and statuses, as
numbers on ``entry.time`` and a few fields, and one BSP sample shows 13-digit milliseconds.
``to_epoch`` accepts all of them:

- an int, a float, or a string of digits (optionally signed, surrounding spaces allowed);
- a value above 10**11 (year 5138 in seconds) is taken as **milliseconds** and divided by
  1000, rounding down;
- anything else — prose like ``"April 17, 2025"``, booleans, negatives, NaN, empty — gives
  ``None``. A garbage timestamp never rejects its item: the item is kept with its raw
  JSON and the stored timestamp is NULL.
"""

from __future__ import annotations

import math

_MILLIS_ABOVE = 10**11
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the last second PostgreSQL can show


def to_epoch(value: object) -> int | None:
    """Unix seconds from a timestamp as Meta sends it, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        seconds = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or not (text.isascii() and text.lstrip("+-").isdigit()) or len(text) > 20:
            return None
        seconds = int(text)
    else:
        return None
    if seconds < 0:
        return None
    if seconds > _MILLIS_ABOVE:
        seconds //= 1000
    return seconds if seconds <= _MAX_SECONDS else None
