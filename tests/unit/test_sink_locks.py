"""The replies' advisory locks: which locks a transaction takes, in which order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wahook.sinks.locks import BUCKETS, FINE, plan
from wahook.sinks.rows import reply_lock

keys = st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2 * FINE)


@given(keys)
def test_every_key_is_guarded_and_no_more_than_the_bound_is_taken(ks: list[int]) -> None:
    buckets, lock_keys, shared = plan(ks)
    assert len(buckets) == len(lock_keys) <= BUCKETS
    taken = set(zip(buckets, lock_keys, strict=True))
    for k in ks:
        # a transaction sharing k with another conflicts on k itself, or on k's bucket
        # locked exclusive: in fine mode on the key, in coarse mode on the bucket
        if shared:
            assert (k % BUCKETS, k) in taken
            assert (k % BUCKETS, None) in taken
        else:
            assert (k % BUCKETS, None) in taken
    assert shared == (len(set(ks)) <= FINE)
    if not shared:
        assert lock_keys == [None] * len(buckets)


@given(keys)
def test_locks_come_in_one_global_order(ks: list[int]) -> None:
    """Bucket, then the bucket's own lock before its keys, then keys ascending: any two
    transactions take the locks they share in the same order (so never deadlock)."""
    buckets, lock_keys, _ = plan(ks)
    order = [(b, k is not None, k or 0) for b, k in zip(buckets, lock_keys, strict=True)]
    assert order == sorted(order)
    assert len(set(order)) == len(order)
    for b, k in zip(buckets, lock_keys, strict=True):  # a key comes after its bucket's lock
        if k is not None:
            assert order.index((b, False, 0)) < order.index((b, True, k))


def test_a_burst_beyond_fine_locks_buckets_not_messages() -> None:
    many = [reply_lock(1, f"wamid.{n}") for n in range(5 * BUCKETS)]
    buckets, lock_keys, shared = plan(many)
    assert not shared
    assert buckets == sorted(set(buckets))
    assert len(buckets) <= BUCKETS
    assert lock_keys == [None] * len(buckets)


def test_keys_are_stable_and_distinguish_organizations() -> None:
    assert reply_lock(1, "wamid.A") == reply_lock(1, "wamid.A")
    assert reply_lock(1, "wamid.A") != reply_lock(2, "wamid.A")
    assert -(2**63) <= reply_lock(1, "wamid.\udc80") < 2**63  # a lone surrogate still hashes
