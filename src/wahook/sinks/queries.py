"""Read-side queries on the store: per-organization secrets for the receiver, and the
figures `wahook stats` prints."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from wahook.sinks import sql

if TYPE_CHECKING:
    import asyncpg


@dataclasses.dataclass(frozen=True, slots=True)
class OrganizationSecrets:
    """What the receiver needs from one active organization. Secrets stay out of ``repr``."""

    id: int
    name: str
    waba_id: str | None
    phone_number_id: str | None
    verify_token: str | None = dataclasses.field(repr=False)
    app_secret: str | None = dataclasses.field(repr=False)


async def organization_secrets(
    pool: asyncpg.Pool | asyncpg.Connection,
) -> list[OrganizationSecrets]:
    """Every active organization's verify token and app secret (either may be None).

    The receiver accepts a subscription handshake whose token matches any of them, and a
    POST whose signature matches any app secret (plus those configured in settings)."""
    rows = await pool.fetch(sql.load("organization_secrets"))
    return [
        OrganizationSecrets(
            id=r["id"],
            name=r["name"],
            waba_id=r["whatsapp_business_account_id"],
            phone_number_id=r["whatsapp_phone_number_id"],
            verify_token=r["whatsapp_webhook_verify_token"],
            app_secret=r["whatsapp_app_secret"],
        )
        for r in rows
    ]


async def stats(
    pool: asyncpg.Pool | asyncpg.Connection, organization_id: int | None = None
) -> dict[str, Any]:
    """Row counts of every table, and the delivery funnel per campaign."""
    counts = await pool.fetchrow(sql.load("stats_counts"))
    funnel = await pool.fetch(sql.load("stats_funnel"), organization_id)
    return {
        "counts": dict(counts.items()) if counts is not None else {},
        "campaigns": [dict(r.items()) for r in funnel],
    }
