"""`wahook migrate` and `wahook stats`: the store's commands."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from wahook.errors import ConfigError

MIGRATE_EPILOG = """\
examples:
  wahook migrate                                   # DSN from WAHOOK_DSN or DB_HOST/DB_*
  wahook migrate --dsn postgresql://postgres@127.0.0.1:5432/whatsapp_db
  wahook migrate --embedded                        # the local server under .wahook/
  wahook migrate --check                           # list pending migrations, apply none;
                                                   # exit 1 while any is pending

Safe to run from many processes at once: an advisory lock serialises them and
migrations already applied are skipped.
"""

STATS_EPILOG = """\
examples:
  wahook stats                                     # counts and the funnel per campaign
  wahook stats --organization 1 --json
  wahook stats --dsn postgresql://postgres@127.0.0.1:5432/whatsapp_db
"""


ORG_EPILOG = """\
examples:
  wahook org add --name "Default Organization" --phone-number-id 106540352242922 \\
                 --waba-id 102290129340398 --embedded
  wahook org add --name Acme --phone-number-id 1065... --verify-token T --app-secret S
  wahook org list --embedded

Adding an organization applies the quarantined items that were waiting for it (events
whose phone_number_id / WABA id matched no organization), unless --no-replay is given.
"""


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="PostgreSQL DSN (overrides WAHOOK_DSN and DB_HOST/DB_PORT/DB_NAME/DB_USER/...)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded PostgreSQL under the data dir (WAHOOK_DATA_DIR, default .wahook)",
    )


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    migrate = sub.add_parser(
        "migrate",
        help="create or update the database schema",
        description="Apply the schema migrations that are missing, under an advisory lock.",
        epilog=MIGRATE_EPILOG,
        formatter_class=fmt,
    )
    _add_dsn(migrate)
    migrate.add_argument("--check", action="store_true", help="only list pending migrations")
    migrate.set_defaults(func=run_migrate)

    stats = sub.add_parser(
        "stats",
        help="what is stored: counts, delivery funnel per campaign",
        description="Row counts of every table and the delivery funnel of every campaign.",
        epilog=STATS_EPILOG,
        formatter_class=fmt,
    )
    _add_dsn(stats)
    stats.add_argument("--organization", type=int, help="only this organization's campaigns")
    stats.add_argument("--json", action="store_true", help="print JSON instead of tables")
    stats.set_defaults(func=run_stats)

    org = sub.add_parser(
        "org",
        help="add or list organizations (tenants)",
        description="Register the organizations webhooks are routed to.",
        epilog=ORG_EPILOG,
        formatter_class=fmt,
    )
    org_sub = org.add_subparsers(dest="org_command", metavar="ACTION", required=True)
    add = org_sub.add_parser(
        "add", help="add an organization, then apply its quarantined items", epilog=ORG_EPILOG,
        formatter_class=fmt,
    )  # fmt: skip
    _add_dsn(add)
    add.add_argument("--name", required=True, help="a name people recognise")
    add.add_argument("--phone-number-id", help="metadata.phone_number_id of its webhooks")
    add.add_argument("--waba-id", help="its WhatsApp Business Account id (entry.id)")
    add.add_argument("--verify-token", help="its webhook verify token (GET handshake)")
    add.add_argument("--app-secret", help="its Meta app secret (POST signatures)")
    add.add_argument("--no-replay", action="store_true", help="leave the quarantine as it is")
    add.set_defaults(func=run_org_add)
    listing = org_sub.add_parser("list", help="list organizations (secrets not shown)")
    _add_dsn(listing)
    listing.set_defaults(func=run_org_list)


def resolve_dsn(args: argparse.Namespace) -> str:
    """--dsn, else the environment's DSN, else (--embedded) the local embedded server."""
    if args.dsn:
        return str(args.dsn)
    from wahook.settings import Settings

    settings = Settings.from_env()
    if settings.dsn and not args.embedded:
        return settings.dsn
    if args.embedded:
        from wahook.sinks.embedded import EmbeddedPostgres

        return EmbeddedPostgres(settings.data_dir).start()
    raise ConfigError("no database: pass --dsn, set WAHOOK_DSN (or DB_HOST ...), or --embedded")


def run_migrate(args: argparse.Namespace) -> int:
    # Errors (no database, a bad setting ...) are one line from `wahook.cli.main`.
    dsn = resolve_dsn(args)
    done = asyncio.run(_migrate(dsn, check=args.check))
    verb = "pending" if args.check else "applied"
    for version, name in done:
        print(f"{verb} {version:04d}_{name}")
    if not done:
        print("schema is up to date")
    # --check exits 1 while migrations are pending, so a deploy script can gate on it.
    return 1 if args.check and done else 0


async def _migrate(dsn: str, *, check: bool) -> list[tuple[int, str]]:
    import asyncpg

    from wahook.sinks.migrate import migrate, pending

    conn = await asyncpg.connect(dsn)
    try:
        return await (pending(conn) if check else migrate(conn))
    finally:
        await conn.close()


def run_stats(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(args)
    result = asyncio.run(_stats(dsn, args.organization))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(_table(["table", "rows"], list(result["counts"].items())))
    print()
    columns = ["campaign_id", "name", "status", "audience", "sent", "delivered", "read"]
    columns += ["failed", "replied"]
    rows = [[c[k] for k in columns] for c in result["campaigns"]]
    print(_table(columns, rows) if rows else "no campaigns")
    return 0


async def _stats(dsn: str, organization: int | None) -> dict[str, Any]:
    import asyncpg

    from wahook.sinks.queries import stats

    conn = await asyncpg.connect(dsn)
    try:
        return await stats(conn, organization)
    finally:
        await conn.close()


def _table(header: list[str], rows: list[Any]) -> str:
    cells = [[str(v) for v in header]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _validate_org(args: argparse.Namespace) -> None:
    """One line for what cannot be an organization: a blank name, an id that is not
    Meta's (digits only)."""
    if not args.name.strip():
        raise ConfigError("--name must not be blank")
    for flag, value in (("--phone-number-id", args.phone_number_id), ("--waba-id", args.waba_id)):
        if value is not None and not (value.isascii() and value.isdigit()):
            raise ConfigError(f"{flag} must be Meta's numeric id (digits only), got {value!r}")


def run_org_add(args: argparse.Namespace) -> int:
    if not (args.phone_number_id or args.waba_id):
        raise ConfigError("give --phone-number-id or --waba-id (or both)")
    _validate_org(args)
    dsn = resolve_dsn(args)
    org_id, replayed = asyncio.run(_org_add(dsn, args))
    print(f"organization {org_id} added: {args.name}")
    if replayed is not None:
        print(
            f"quarantine replayed: {replayed.applied} applied, "
            f"{replayed.still_unrouted} still without an organization"
            + (f", {replayed.unverified} waiting for an operator's verdict"
               " (wahook replay --quarantine --any-organization)"
               if replayed.unverified else "")
        )  # fmt: skip
    return 0


async def _org_add(dsn: str, args: argparse.Namespace) -> tuple[int, Any]:
    import asyncpg

    from wahook.sinks.postgres import add_organization, replay_quarantine

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        try:
            org_id = await add_organization(
                pool,
                name=args.name.strip(),
                phone_number_id=args.phone_number_id,
                waba_id=args.waba_id,
                verify_token=args.verify_token,
                app_secret=args.app_secret,
            )
        except asyncpg.UniqueViolationError:
            taken = await pool.fetchval(
                "SELECT id FROM organizations WHERE whatsapp_phone_number_id = $1",
                args.phone_number_id,
            )
            raise ConfigError(
                f"phone number id {args.phone_number_id} already belongs to organization {taken}"
            ) from None
        replayed = None if args.no_replay else await replay_quarantine(pool)
        return org_id, replayed
    finally:
        await pool.close()


def run_org_list(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(args)
    orgs = asyncio.run(_org_list(dsn))
    rows = [
        [o.id, o.name, o.phone_number_id, o.waba_id, "yes" if o.verify_token else "no",
         "yes" if o.app_secret else "no"]
        for o in orgs
    ]  # fmt: skip
    header = ["id", "name", "phone_number_id", "waba_id", "verify_token", "app_secret"]
    print(_table(header, rows) if rows else "no organizations")
    return 0


async def _org_list(dsn: str) -> list[Any]:
    import asyncpg

    from wahook.sinks.queries import organization_secrets

    conn = await asyncpg.connect(dsn)
    try:
        return list(await organization_secrets(conn))
    finally:
        await conn.close()
