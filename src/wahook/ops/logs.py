"""``wahook logs receiver|processor``: the Lambdas' CloudWatch log events, masked.

The log group is found, first match wins, from ``--log-group``, ``--function``
(``/aws/lambda/<name>``), ``WAHOOK_<ROLE>_LOG_GROUP``, ``WAHOOK_<ROLE>_FUNCTION`` (role:
``RECEIVER`` or ``PROCESSOR``).

Following polls ``FilterLogEvents`` from the last event's timestamp; the ids of events at
that timestamp are remembered (only those), so nothing prints twice and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from wahook.ops.aws import client
from wahook.settings import Settings

ROLES = ("receiver", "processor")


def log_group(
    role: str, env: Mapping[str, str], *, group: str | None = None, function: str | None = None
) -> str | None:
    """The log group of ``role``'s Lambda, or None when nothing names it."""
    if group:
        return group
    if function:
        return f"/aws/lambda/{function}"
    prefix = f"WAHOOK_{role.upper()}_"
    if env.get(prefix + "LOG_GROUP"):
        return env[prefix + "LOG_GROUP"]
    if env.get(prefix + "FUNCTION"):
        return f"/aws/lambda/{env[prefix + 'FUNCTION']}"
    return None


def format_event(event: Mapping[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(event["timestamp"] / 1000, dt.UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return f"{stamp} {event.get('logStreamName', '')} {event['message'].rstrip()}"


async def tail(
    settings: Settings,
    group: str,
    emit: Callable[[Mapping[str, Any]], None],
    *,
    since: float = 600.0,
    pattern: str | None = None,
    follow: bool = False,
    poll: float = 2.0,
    stop_after: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Emit the events of the last ``since`` seconds (matching ``pattern``), then, with
    ``follow``, new ones every ``poll`` seconds until ``stop`` is set or ``stop_after``
    seconds have passed. Returns how many were emitted."""
    stop = stop or asyncio.Event()
    deadline = None if stop_after is None else time.monotonic() + stop_after
    start = int((time.time() - since) * 1000)
    seen_at_start: set[str] = set()
    emitted = 0
    async with client(settings, "logs") as logs:
        while True:
            kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start}
            if pattern:
                kwargs["filterPattern"] = pattern
            while True:
                page = await logs.filter_log_events(**kwargs)
                events = sorted(page.get("events", []), key=lambda e: e["timestamp"])
                for event in events:
                    if event["eventId"] in seen_at_start or event["timestamp"] < start:
                        continue
                    if event["timestamp"] > start:
                        start, seen_at_start = event["timestamp"], set()
                    seen_at_start.add(event["eventId"])
                    emit(event)
                    emitted += 1
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
            if not follow:
                return emitted
            wait = poll if deadline is None else min(poll, deadline - time.monotonic())
            if wait <= 0:
                return emitted
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return emitted
            except TimeoutError:
                pass
