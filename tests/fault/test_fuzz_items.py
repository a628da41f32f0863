"""Fuzzing one item at a time (issue 11, "the suite that keeps it fixed").

Hypothesis takes a fixture body, picks one of its items (an event's bytes: a message, a
status, an error, a call, a whole one-object value ...) and mutates only those bytes, at
the byte level (splices, truncation, deletions, random bytes) and the JSON level (a key
set first or last — so duplicated —, lone surrogate keys and values, huge and
out-of-range numbers, NaN, deep nesting, wrong types, the whole item replaced). The
properties, for every mutated body:

- ``decode`` raises nothing but ``DecodeError``, and never the guard of last resort;
- it finishes (a watchdog of 10 s of CPU per input stops a hang as a failure);
- when the mutated bytes are still one JSON value on their own (so the envelope around
  them is what it was): the body decodes — unless that value nests deeper than the
  interpreter's recursion limit allows, which rejects the body by design —, every other
  event is equal to the unmutated body's, no other problem appears, and the mutated item
  is an event or a ``Problem`` whose raw bytes are the mutated bytes; ``decode_item`` of an
  event's raw bytes (a quarantine replay) gives its typed value again.

The default run is short (``FUZZ_EXAMPLES``, 300); ``-m benchmark`` or
``benchmarks/fuzz_items.py --inputs 200000`` runs the same property at scale. A slow test
writes a sample of the mutated bodies through ``PostgresSink``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fixtures import all_bodies
from wahook.parse import (
    ChangeEvent,
    DecodeError,
    Event,
    MessageEvent,
    Problem,
    StatusEvent,
    decode,
    decode_item,
)
from wahook.parse.decode import UNEXPECTED
from wahook.parse.models import ITEM_TYPES, KNOWN_FIELDS

_ITEM_ARRAYS = ("messages", "statuses", *ITEM_TYPES)

# --- the items to mutate -------------------------------------------------------------------


class Target:
    """One item of one fixture: where its bytes are, and the body's events without it.
    (Not a dataclass: hypothesis would print every field of a failing case, body and all.)"""

    __slots__ = ("body", "end", "name", "path", "siblings", "start")

    def __init__(self, name: str, body: bytes, start: int, end: int, path: str) -> None:
        self.name, self.body, self.start, self.end, self.path = name, body, start, end, path
        self.siblings: tuple[Event, ...] = ()

    def __repr__(self) -> str:  # what a failure report needs, not the whole body
        return f"<Target {self.name} {self.path}>"

    def mine(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + ".")

    def with_item(self, item: bytes) -> bytes:
        return self.body[: self.start] + item + self.body[self.end :]


def _targets() -> list[Target]:
    out = []
    for name, body in sorted(all_bodies().items()):
        n = decode(body)
        assert n.problems == [], name
        events = list(n.events())
        for ev in events:
            if body.count(ev.raw) != 1:  # an item repeated verbatim: its place is ambiguous
                continue
            start = body.index(ev.raw)
            target = Target(name, body, start, start + len(ev.raw), ev.path)
            target.siblings = tuple(e for e in events if not target.mine(e.path))
            out.append(target)
    return out


TARGETS = _targets()

# --- mutations -------------------------------------------------------------------------------

_SPECIAL = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"1.0e131073", b"1e-16384",
    b"-0", b"0.0e0", b"18446744073709551616", b"-9223372036854775809", b"true", b"null",
    b"{}", b"[]", b'""', b'"\\ud800"', b'"a\\udfff\\ud800b"', b'"\\ude00\\ud83d"',
    b'"\\u0000"', b'"\\\\ud800"', b'"\\ud83d\\ude00"', '"é€😀"'.encode(), b'"\\uE000"',
    b'{"\\ud800":1}', b'[{"id":"wamid.x"}]', b'"1749416383"', b"1749416383123",
]  # fmt: skip
_KEYS = [
    b'"id"', b'"status"', b'"timestamp"', b'"type"', b'"from"', b'"text"', b'"errors"',
    b'"recipient_id"', b'"conversation"', b'"pricing"', b'"context"', b'"image"',
    b'"interactive"', b'"contacts"', b'"location"', b'"code"', b'"event"', b'"metadata"',
    b'"messages"', b'"statuses"', b'"\\ud800"', b'"x\\udc00"', b'"\\uDBFF\\uDBFF"', b'""',
]  # fmt: skip

_CHARS = st.characters() | st.integers(0xD800, 0xDFFF).map(chr)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A function, not a lambda: hypothesis reads a lambda's source to see that it recurses, and
    # the source of one spanning several lines is not always found.
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(_CHARS, max_size=4), inner,
                                                         max_size=3)  # fmt: skip


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_CHARS, max_size=8),
    _containers,
    max_leaves=6,
)  # fmt: skip

FRAGMENTS = st.one_of(
    st.sampled_from(_SPECIAL),
    st.integers(1, 6000).map(lambda n: b"9" * n),  # integers of any size
    st.integers(1, 2500).map(lambda n: b"[" * n + b"]" * n),  # nesting, to past the limit
    st.integers(1, 1200).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    _JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    _JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=12),
)
KEYS = st.sampled_from(_KEYS) | st.text(_CHARS, max_size=6).map(lambda t: json.dumps(t).encode())


def _members(item: bytes) -> bytes:
    """The inside of an object's bytes (``b""`` for ``{}``)."""
    return item.strip()[1:-1].strip()


def mutate(draw: st.DrawFn, item: bytes) -> bytes:
    """``item`` (an object's bytes) mutated once."""
    n = len(item)
    kind = draw(st.sampled_from(["first", "last", "whole", "splice", "truncate", "delete",
                                 "bytes", "twice"]))  # fmt: skip
    inner = _members(item)
    if kind == "first":  # a key set before the others: duplicated keys, the last one wins
        return b"{" + draw(KEYS) + b":" + draw(FRAGMENTS) + (b"," + inner if inner else b"") + b"}"
    if kind == "last":  # ... or after them: it overrides
        return b"{" + (inner + b"," if inner else b"") + draw(KEYS) + b":" + draw(FRAGMENTS) + b"}"
    if kind == "whole":
        return draw(FRAGMENTS)
    if kind == "twice":  # every key duplicated
        return b"{" + inner + (b"," + inner if inner else b"") + b"}"
    i = draw(st.integers(0, n))
    j = draw(st.integers(i, min(n, i + 40)))
    if kind == "splice":
        return item[:i] + draw(FRAGMENTS) + item[j:]
    if kind == "truncate":
        return item[:i]
    if kind == "delete":
        return item[:i] + item[j:]
    return item[:i] + draw(st.binary(min_size=1, max_size=4)) + item[j:]


_TARGETS = st.sampled_from(TARGETS)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Target, bytes]:
    target = draw(_TARGETS)
    return target, mutate(draw, target.body[target.start : target.end])


CASES = cases()

# --- the properties --------------------------------------------------------------------------

# Nesting that must decode: well under the interpreter's recursion limit (1000) less the
# stack of pytest and hypothesis. Deeper values may be refused with "nested too deeply".
_SURELY_FINE_DEPTH = 200
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


class Hang(BaseException):
    """A decode that did not finish (BaseException: decode's guard must not catch it)."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise Hang(f"decode still running after {seconds} s of CPU")

    # CPU time of this process, not wall time: a busy machine cannot make it fire.
    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def one_json_value(data: bytes) -> bool:
    """Whether ``data`` is exactly one JSON value by the RFC (no NaN), any number size."""
    try:
        json.loads(data.decode("utf-8"), parse_constant=_reject_constant,
                   parse_int=lambda s: 0, parse_float=lambda s: 0.0)  # fmt: skip
    except (ValueError, RecursionError):
        return False
    return True


def depth(data: bytes) -> int:
    deepest = level = 0
    for c in _STRINGS.sub(b'""', data):
        if c in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif c in b"]}":
            level -= 1
    return deepest


def check(target: Target, item: bytes) -> str:
    """The properties for ``item`` in place of ``target``'s bytes; the outcome's name."""
    body = target.with_item(item)
    refused: DecodeError | None = None
    with watchdog(10):
        try:
            n = decode(body)
        except DecodeError as exc:
            refused = exc
    if refused is not None:
        assert not refused.reason.startswith(UNEXPECTED), refused.reason
        if one_json_value(item):
            assert depth(item) > _SURELY_FINE_DEPTH, (refused.reason, item[:200])
            assert "nested too deeply" in refused.reason, refused.reason
        return "body refused"
    assert isinstance(n.problems, list)
    events = list(n.events())
    if not one_json_value(item):
        # The bytes spill over the envelope (a truncation that still parses, a splice of
        # brackets ...): no promise but "no crash" and "no other exception".
        return "envelope changed"
    assert tuple(ev for ev in events if not target.mine(ev.path)) == target.siblings
    assert [p for p in n.problems if not target.mine(p.path)] == []
    own: list[Event | Problem] = [ev for ev in events if target.mine(ev.path)]
    own += [p for p in n.problems if target.mine(p.path)]
    if not own:  # only a whole value of a known field, now with empty item arrays only
        field = next(e.field for e in decode(target.body).events() if e.path == target.path)
        value = json.loads(item, parse_int=lambda s: 0, parse_float=lambda s: 0.0)
        arrays = [value[k] for k in _ITEM_ARRAYS if isinstance(value.get(k), list)]
        assert field in KNOWN_FIELDS, "the mutated item vanished"
        assert arrays, "the mutated item vanished"
        assert not any(arrays), "the mutated item vanished"
    exact = item.strip(b" \t\r\n")
    for part in own:
        if part.path == target.path:
            assert part.raw == exact, (part.raw[:200], exact[:200])
        else:  # an item inside a mutated whole value
            assert part.raw in exact
        typed = _typed(part)
        if typed is not None:  # what a quarantine replay would rebuild from the raw bytes
            assert decode_item(part.raw, type(typed)) == typed
    if not own:
        return "empty value"
    return "problem" if isinstance(own[0], Problem) else "event"


def _typed(part: Event | Problem) -> Any:
    if isinstance(part, MessageEvent):
        return part.message
    if isinstance(part, StatusEvent):
        return part.status
    if isinstance(part, ChangeEvent):
        return part.value
    return None


def fuzz(examples: int, seed: int | None = None) -> tuple[Callable[[], None], Counter[str]]:
    """The property as a hypothesis test of ``examples`` inputs, and its outcome counts."""
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(CASES)
    def run(case: tuple[Target, bytes]) -> None:
        outcomes[check(*case)] += 1

    return (run if seed is None else hypothesis.seed(seed)(run)), outcomes


def test_fuzz_one_item_at_a_time() -> None:
    run, outcomes = fuzz(int(os.environ.get("FUZZ_EXAMPLES", "300")))
    run()
    assert sum(outcomes.values()) > 0
    # The mutations reach every outcome, so none of the branches above is dead.
    assert {"event", "problem", "body refused"} <= set(outcomes), outcomes


@pytest.mark.benchmark
def test_fuzz_at_scale() -> None:
    run, outcomes = fuzz(int(os.environ.get("FUZZ_EXAMPLES", "200000")))
    run()
    assert sum(outcomes.values()) >= int(os.environ.get("FUZZ_EXAMPLES", "200000"))


def test_the_targets_cover_every_kind_of_item() -> None:
    kinds = Counter(ev.kind for t in TARGETS for ev in decode(t.body).events() if ev.path == t.path)
    assert set(kinds) == {"message", "status", "change"}
    assert {t.name for t in TARGETS} >= {"batch_240", "msg_text", "status_failed", "field_calls"}


# --- every accepted body is storable in PostgreSQL ---------------------------------------


def sample(count: int) -> list[bytes]:
    """``count`` mutated bodies that ``decode`` accepts, drawn by the same strategy."""
    bodies: list[bytes] = []

    @settings(max_examples=count * 3, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(CASES)
    def draw(case: tuple[Target, bytes]) -> None:
        target, item = case
        body = target.with_item(item)
        if depth(item) > _SURELY_FINE_DEPTH:
            # Whether such a body decodes depends on the caller's stack depth (the
            # recursion limit is shared): the sink's caller is deeper than this one.
            return
        with contextlib.suppress(DecodeError):
            decode(body)
            if len(bodies) < count:
                bodies.append(body)

    draw()
    return bodies


@pytest.mark.slow
async def test_every_accepted_body_is_storable(pool: asyncpg.Pool) -> None:
    from wahook.sinks.postgres import PostgresSink, add_organization
    from wahook.testing import record

    # The fixtures' own organization, so most events are applied and some quarantined.
    body = all_bodies()["msg_text"]
    (ev,) = decode(body).events()
    await add_organization(pool, name="acme", phone_number_id=ev.phone_number_id,
                           waba_id=ev.waba_id)  # fmt: skip
    sink = PostgresSink(pool)
    records = [record(b, id=f"fuzz-{k}") for k, b in enumerate(sample(150))]
    assert len(records) >= 100
    for start in range(0, len(records), 25):
        batch = records[start : start + 25]
        result = await sink.write(batch)
        assert result.failed == {}
        assert result.poisoned == {}, result.poisoned
        expected = sum(len(r.events) + len(r.problems) for r in batch)
        assert result.applied + result.quarantined == expected
    problems = [p for r in records for p in r.problems]
    kept = {bytes(row["raw"]) for row in await pool.fetch("SELECT raw FROM quarantine")}
    assert {p.raw for p in problems} <= kept
