"""Lag is how far behind the pipeline is now, from the source's receipt time: not the age
of the webhook's own timestamps, and 0 once everything is committed (idle)."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from tests.unit.test_runtime_pipeline import body
from wahook.runtime.metrics import PrometheusObserver
from wahook.runtime.pipeline import to_record
from wahook.runtime.source import Message
from wahook.runtime.stats import Fanout, Stats
from wahook.sinks.base import WriteResult

WAITED = 30.0  # seconds between the source's receipt and now, in these tests
DAY = 86_400.0


def lag_metric(observer: PrometheusObserver) -> float:
    for line in generate_latest(observer.registry).decode().splitlines():
        if line.startswith("wahook_lag_seconds "):
            return float(line.split()[1])
    raise AssertionError("no wahook_lag_seconds")


def test_lag_counts_from_receipt_and_is_zero_when_idle() -> None:
    stats, prometheus = Stats(), PrometheusObserver()
    observer = Fanout(stats, prometheus)
    assert stats.lag == 0.0
    assert lag_metric(prometheus) == 0.0
    # The webhook's timestamps are from 2023; the source got the bodies WAITED s ago.
    received = time.time() - WAITED
    old = to_record(Message(id="a", body=body(1), received_at=received), observer)
    new = to_record(Message(id="b", body=body(2), received_at=received + 10), observer)
    assert old.events[0].timestamp is not None
    assert time.time() - old.events[0].timestamp > 365 * DAY
    for value in (stats.lag, lag_metric(prometheus)):
        assert WAITED <= value < DAY  # the oldest waiting body, not the webhook's age
    observer.committed([old], WriteResult(applied=1), 0.01)
    assert WAITED - 10 <= stats.lag < DAY  # "b" still waits
    assert stats.commit_delay is not None
    assert stats.commit_delay >= WAITED
    observer.committed([new], WriteResult(applied=1), 0.01)
    # Idle: nothing waits, whatever was committed before.
    assert stats.lag == 0.0
    assert lag_metric(prometheus) == 0.0
    assert stats.summary()["lag_seconds"] == 0.0


def test_bodies_given_back_do_not_wait_forever() -> None:
    stats = Stats()
    record = to_record(Message(id="a", body=body(1), received_at=time.time() - WAITED), stats)
    stats.committed([record], WriteResult(failed={"a": "transient: down"}), 0.01)
    assert stats.lag == 0.0  # back in the source: counted again when redelivered
    again = to_record(Message(id="a", body=body(1), received_at=time.time() - WAITED), stats)
    assert stats.lag >= WAITED
    stats.committed([again], WriteResult(applied=1), 0.01)
    assert stats.lag == 0.0


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 1000)), max_size=30), st.data())
def test_lag_is_the_oldest_waiting_body(
    items: list[tuple[int, float]], data: st.DataObject
) -> None:
    stats = Stats()
    now = time.time()
    waiting: dict[str, float] = {}
    for i, age in items:
        stats.decoded(to_record(Message(id=f"m{i}", body=b"{}", received_at=now - age)), None)
        waiting[f"m{i}"] = now - age
    done = data.draw(st.lists(st.sampled_from(sorted(waiting) or ["x"]), unique=True))
    records = [to_record(Message(id=i, body=b"{}")) for i in done]
    stats.committed(records, WriteResult(), 0.0)
    left = [t for i, t in waiting.items() if i not in done]
    if left:
        assert stats.lag >= now - min(left)
        assert stats.lag < now - min(left) + DAY
    else:
        assert stats.lag == 0.0
