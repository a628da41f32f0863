"""SIGTERM/SIGINT into a stop event — used only at the CLI edge (``wahook worker``,
``wahook replay``). The pipeline and the Lambda handler never install handlers.

The first signal asks for a graceful stop; a second one of the same kind means "now": the
default handler is restored so it ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import structlog

log = structlog.get_logger("wahook.runtime")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("stop_forced", signal=signum.name)
            loop.remove_signal_handler(signum)
            signal.raise_signal(signum)
            return
        log.info("stop_requested", signal=signum.name)
        stop.set()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
