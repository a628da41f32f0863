"""Interpreter settings for a process that runs the pipeline (worker, replay, serve, Lambda).

>>> tune_gc(Settings.from_env().gc_threshold)   # at start-up: what `wahook worker` does
>>> tune_gc(0)                                  # leave the interpreter as it is

Every event allocates a few short-lived containers (the rows of its batch, dicts, tuples);
none of them form cycles, so reference counting frees them. Python's cyclic collector still
runs every 700 net allocations and, every so often, walks every live object: the batch in
hand, the batches queued, every module loaded. In ``benchmarks/bench_pipeline.py`` that was
about 10% of the worker's CPU (18.9 -> 16.9 µs per event; ``--gc-threshold 0`` runs it with
Python's defaults). ``tune_gc`` moves what start-up allocated out of the collector's reach
(``gc.freeze``) and collects the youngest generation every ``threshold`` allocations
instead (``WAHOOK_GC_THRESHOLD``, default in ``wahook.settings``)."""

from __future__ import annotations

import gc


def tune_gc(threshold: int) -> bool:
    """Freeze the start-up heap and set the first collection threshold to ``threshold``
    (the older generations: every 20 and 100 collections). ``threshold <= 0`` changes
    nothing. Returns whether anything was changed."""
    if threshold <= 0:
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 100)
    return True
