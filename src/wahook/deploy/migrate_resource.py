"""The CloudFormation custom resource that migrates the schema on every deploy.

Handler: ``wahook.deploy.migrate_resource.handler`` (shipped in the processor's package,
which has asyncpg). On ``Create`` and ``Update`` it reads the database secret (see
``wahook.deploy.secrets``) and applies the missing migrations (``wahook.sinks.migrate``:
each in its own transaction, under an advisory lock, so a processor starting meanwhile is
safe); on ``Delete`` it does nothing, since dropping a stack must never drop the data.
Its attributes: ``SchemaVersion`` (the newest migration, e.g. ``0004``) and ``Applied``
(those this call applied, or ``none``).

Either way it answers CloudFormation with a PUT of the result to the event's
``ResponseURL``: a handler that failed without answering would leave the stack waiting for
an hour, so every error becomes a ``FAILED`` answer with a reason that names no secret,
and the migration is given the function's remaining time less a margin to answer in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("wahook.deploy.migrate")

ANSWER_MS = 10_000
"""Time kept back from the function's timeout to send the answer."""

PHYSICAL_ID = "wahook-schema"


def _redact(text: str, dsn: str | None) -> str:
    """``text`` without the DSN's password (drivers may quote the DSN in errors)."""
    password = urlsplit(dsn).password if dsn else None
    return text.replace(password, "***") if password else text


def answer(
    event: Mapping[str, Any],
    status: str,
    *,
    reason: str = "",
    data: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> int:
    """PUT the custom resource's result to ``event["ResponseURL"]``; returns the HTTP status."""
    body = {
        "Status": status,
        "Reason": reason[:3000] or status,
        "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_ID,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": dict(data or {}),
    }
    payload = json.dumps(body).encode()
    # A presigned S3 URL: the signature covers the (empty) content type.
    request = urllib.request.Request(
        event["ResponseURL"],
        data=payload,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(payload))},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


async def _migrate(dsn: str, seconds: float | None) -> list[tuple[int, str]]:
    from wahook.sinks.migrate import migrate_dsn

    async with asyncio.timeout(seconds):
        return await migrate_dsn(dsn)


def run(event: Mapping[str, Any], remaining_ms: int | None) -> tuple[str, str, dict[str, str]]:
    """(status, reason, data) for ``event``; never raises."""
    request = event.get("RequestType")
    if request == "Delete":
        return "SUCCESS", "the schema and its data are kept when the stack goes", {}
    if request not in ("Create", "Update"):
        return "FAILED", f"unknown RequestType {request!r}", {}
    dsn: str | None = None
    try:
        from wahook.deploy.secrets import load_secrets
        from wahook.settings import Settings

        load_secrets()
        dsn = Settings.from_env().dsn
        if not dsn:
            return "FAILED", "no database: set the database secret (WAHOOK_DSN_SECRET_ARN)", {}
        seconds = None if remaining_ms is None else max(1.0, (remaining_ms - ANSWER_MS) / 1000)
        done = asyncio.run(_migrate(dsn, seconds))
    except TimeoutError:
        return "FAILED", "migration did not finish in the function's time (database reachable?)", {}
    except Exception as exc:
        return "FAILED", _redact(f"{type(exc).__name__}: {exc}", dsn), {}
    from wahook.sinks import sql

    applied = ",".join(f"{v:04d}_{name}" for v, name in done)
    # Never an empty attribute: the processor's environment names SchemaVersion.
    data = {
        "SchemaVersion": f"{max(v for v, _, _ in sql.migrations()):04d}",
        "Applied": applied or "none",
    }
    return "SUCCESS", f"applied: {applied or 'nothing, up to date'}", data


def handler(event: Mapping[str, Any], context: Any) -> None:
    """The custom resource's Lambda entry point."""
    get = getattr(context, "get_remaining_time_in_millis", None)
    status, reason, data = run(event, int(get()) if callable(get) else None)
    (log.warning if status == "FAILED" else log.info)(
        "schema_migration status=%s request=%s reason=%s",
        status,
        event.get("RequestType"),
        reason,
    )
    answer(event, status, reason=reason, data=data)
