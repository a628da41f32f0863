"""What a test webhook produced in PostgreSQL, found by its wamids (read-only queries).

The queries name fixed tables and columns only; wamids and ids are parameters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

# table -> (columns printed, how a row is matched to a wamid)
_TABLES: dict[str, tuple[str, str]] = {
    "messages": (
        "organization_id, whatsapp_message_id AS wamid, direction, message_type, message_status",
        "whatsapp_message_id = ANY($1::text[])",
    ),
    "incoming_messages": (
        "organization_id, whatsapp_message_id AS wamid, message_type, content, "
        "interactive_type, media_id",
        "whatsapp_message_id = ANY($1::text[])",
    ),
    "webhook_events": (
        "organization_id, whatsapp_message_id AS wamid, event_kind, event_type",
        "whatsapp_message_id = ANY($1::text[])",
    ),
    # Quarantined items keep their raw bytes, which hold the wamid.
    "quarantine": (
        "kind, reason, phone_number_id, w.wamid",
        "position(convert_to(w.wamid, 'UTF8') in raw) > 0",
    ),
}


async def rows_for(conn: Any, wamids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables above that holds one of ``wamids``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, (columns, match) in _TABLES.items():
        if table == "quarantine":
            sql = (
                f"SELECT {columns} FROM quarantine, unnest($1::text[]) AS w(wamid) "
                f"WHERE {match} ORDER BY quarantine.id"
            )
        else:
            sql = f"SELECT {columns} FROM {table} WHERE {match} ORDER BY id"
        out[table] = [dict(r) for r in await conn.fetch(sql, list(wamids))]
    return out


def found(rows: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The wamids that reached the audit trail or the quarantine."""
    return {r["wamid"] for table in ("webhook_events", "quarantine") for r in rows[table]}


async def wait_for_rows(
    conn: Any, wamids: Sequence[str], wait: float, poll: float = 0.5
) -> dict[str, list[dict[str, Any]]]:
    """Poll until every wamid has a row (audit trail or quarantine), or ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        rows = await rows_for(conn, wamids)
        if found(rows) >= set(wamids) or time.monotonic() >= deadline:
            return rows
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))


async def organizations_with(conn: Any, phone_number_id: str, waba_id: str) -> list[int]:
    """Ids of organizations routed by this phone number id or WABA id."""
    records = await conn.fetch(
        "SELECT id FROM organizations WHERE whatsapp_phone_number_id = $1 "
        "OR whatsapp_business_account_id = $2 ORDER BY id",
        phone_number_id,
        waba_id,
    )
    return [int(r["id"]) for r in records]


async def active_organization(conn: Any, phone_number_id: str) -> bool | None:
    """True/False: an organization has this phone number id and is (not) active; None: none."""
    value = await conn.fetchval(
        "SELECT is_active FROM organizations WHERE whatsapp_phone_number_id = $1",
        phone_number_id,
    )
    return None if value is None else bool(value)


async def unrouted(conn: Any, exclude_phone_number_id: str) -> list[tuple[str, str, int]]:
    """(phone number id, WABA id, items) waiting in the quarantine for an organization."""
    records = await conn.fetch(
        "SELECT coalesce(phone_number_id, '') AS p, coalesce(waba_id, '') AS w, count(*) AS n "
        "FROM quarantine WHERE kind = 'tenant' AND resolved_at IS NULL "
        "AND phone_number_id IS DISTINCT FROM $1 GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 5",
        exclude_phone_number_id,
    )
    return [(r["p"], r["w"], int(r["n"])) for r in records]
