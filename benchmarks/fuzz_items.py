"""Fuzz one item at a time, at scale: the property of tests/fault/test_fuzz_items.py.

    .venv/bin/python benchmarks/fuzz_items.py --inputs 200000       # ~10 min of one core
    .venv/bin/python benchmarks/fuzz_items.py --inputs 5000 --seed 7

Each input is a fixture body with one item's bytes mutated by hypothesis (byte and JSON
level: surrogate keys and values, huge numbers, NaN, deep nesting, wrong types, duplicated
keys, truncation ...). Every input must decode or raise ``DecodeError`` within 10 s of CPU; when
the mutated bytes are still one JSON value, the siblings' events must be unchanged and the
item an event or a problem with its exact bytes. Prints the count, the time and how the
inputs ended; exits 1 (after hypothesis shrinks it) on the first input that breaks a rule.
Same as ``FUZZ_EXAMPLES=200000 pytest -m benchmark tests/fault/test_fuzz_items.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fault.test_fuzz_items import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=200_000, help="how many (200000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (random)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    run, outcomes = fuzz(args.inputs, seed)
    wall, cpu = time.perf_counter(), time.process_time()
    failed = False
    try:
        run()
    except Exception as exc:
        notes = "\n".join(getattr(exc, "__notes__", []))  # hypothesis puts the input here
        print(f"FAILED: {type(exc).__name__}: {exc}\n{notes}", file=sys.stderr)
        failed = True
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = sum(outcomes.values())
    ended = ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
    print(f"{total} inputs in {wall:.0f} s ({cpu:.0f} s CPU), seed {seed}: {ended}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
