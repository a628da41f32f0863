"""``wahook worker`` and ``wahook replay``: the argparse side (settings from the
environment, flags on top). The work is in ``runtime.worker`` and ``runtime.replay``, the
only places that install signal handlers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from wahook.cli import PORT, duration, whole
from wahook.errors import ConfigError, WahookError
from wahook.settings import LOG_LEVELS, Settings
from wahook.verdict import ANY, Verdict

WORKER_EXAMPLES = """\
examples:
  # settings from the environment (WAHOOK_DSN or DB_*, WAHOOK_QUEUE_URL or SQS_QUEUE_URL)
  wahook worker
  wahook worker --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/wahook \\
                --dsn postgresql://wahook@db.internal/whatsapp_db --metrics-port 9108
  # against a local SQS emulator
  wahook worker --endpoint-url http://127.0.0.1:5000 \\
                --queue-url http://127.0.0.1:5000/123456789012/wahook --log-format console

SIGTERM/SIGINT: stop receiving, finish and settle in-flight batches within --grace seconds,
give what is left back to the queue (visibility 0), exit 0. A second signal exits at once.
"""

REPLAY_EXAMPLES = """\
examples:
  wahook replay bodies.jsonl --organization 3      # one body per line, organization 3's only
  wahook replay captured/ --any-organization --dry-run   # every .json/.jsonl, no writes
  wahook replay dump.jsonl.gz --any-organization   # gzip is read as it is
  cat bodies.jsonl | wahook replay - --any-organization   # stdin, one body per line
  wahook replay export.json --any-organization     # a JSON array: a list of bodies
  wahook replay a.json b.json --organization 3 --dsn postgresql://postgres@127.0.0.1/whatsapp_db
  wahook replay --dead-letter-queue --dlq-url https://sqs.../wahook-dlq   # drain it once
  wahook replay --quarantine        # items of organizations configured since they came
  wahook replay --quarantine --any-organization   # also items that came without a verdict

Whose data: files carry no signature, so say whose items they hold: --organization N
(items of any other organization are quarantined as forged) or --any-organization (you
vouch for every one). Dead letters keep the verdict their receiver gave them; for them and
for --quarantine the flag only applies to items that arrived without one (queued before
verdicts existed), which otherwise stay quarantined.

Exit status: 0 when every body was stored or quarantined, 1 when some were not (they are
listed), 2 on a usage or configuration error, or when an input cannot be webhook bodies
(another compression, pretty-printed JSON in a .jsonl, nothing in it): said in one line,
before anything is stored.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dsn", metavar="DSN", help="PostgreSQL DSN (default: WAHOOK_DSN or DB_*)")
    p.add_argument(
        "--batch-size", type=whole(), metavar="N", help="events per transaction (default 1000)"
    )
    p.add_argument(
        "--batch-max-age",
        type=duration(positive=False),
        metavar="S",
        help="seconds a batch may wait (default 0.2)",
    )
    p.add_argument("--log-format", choices=("json", "console"), help="default: json")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default: info")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    w = sub.add_parser(
        "worker",
        help="long-poll SQS and commit webhooks to PostgreSQL",
        description="Long-poll an SQS queue of webhook bodies and commit them to PostgreSQL;"
        " messages are deleted only after their batch has committed.",
        epilog=WORKER_EXAMPLES,
        formatter_class=fmt,
    )
    _common(w)
    w.add_argument(
        "--queue-url", metavar="URL", help="SQS queue URL (default: WAHOOK_QUEUE_URL/SQS_QUEUE_URL)"
    )
    w.add_argument(
        "--region", dest="aws_region", metavar="REGION", help="AWS region (default: AWS_REGION)"
    )
    w.add_argument(
        "--endpoint-url", dest="aws_endpoint_url", metavar="URL", help="SQS endpoint override"
    )
    w.add_argument(
        "--receivers", dest="sqs_receivers", type=whole(), metavar="N", help="concurrent long polls"
    )
    w.add_argument(
        "--writers", type=whole(), metavar="N", help="concurrent batch transactions (default 2)"
    )
    w.add_argument(
        "--grace",
        dest="grace_seconds",
        type=duration(positive=False),
        metavar="S",
        help="stop grace (default 20)",
    )
    w.add_argument(
        "--metrics-port",
        type=PORT,
        metavar="PORT",
        help="serve Prometheus /metrics on this port, on WAHOOK_HOST (127.0.0.1)",
    )
    w.add_argument(
        "--progress-every",
        dest="progress_seconds",
        type=duration(),
        metavar="S",
        help="seconds (default 10)",
    )
    w.set_defaults(func=worker_command)

    r = sub.add_parser(
        "replay",
        help="feed files, directories, JSONL or stdin through the pipeline",
        description="Feed webhook bodies from files, directories, JSONL or stdin through the"
        " same pipeline as the worker, and summarize what was stored and quarantined.",
        epilog=REPLAY_EXAMPLES,
        formatter_class=fmt,
    )
    _common(r)
    r.add_argument("paths", nargs="*", metavar="PATH", help="file, directory, or - for stdin")
    r.add_argument(
        "--dead-letter-queue",
        action="store_true",
        help="drain the dead-letter queue (WAHOOK_DLQ_URL or --dlq-url) instead of files",
    )
    r.add_argument("--dlq-url", dest="dead_letter_queue_url", metavar="URL", help="its URL")
    r.add_argument("--region", dest="aws_region", metavar="REGION", help="AWS region")
    r.add_argument("--endpoint-url", dest="aws_endpoint_url", metavar="URL", help="SQS endpoint")
    r.add_argument(
        "--quarantine",
        action="store_true",
        help="then apply quarantined items whose organization has been configured since",
    )
    whose = r.add_mutually_exclusive_group()
    whose.add_argument(
        "--organization",
        type=int,
        metavar="N",
        help="the items are organization N's: others are quarantined (as forged)",
    )
    whose.add_argument(
        "--any-organization",
        action="store_true",
        help="the items may be any organization's (you vouch for them)",
    )
    r.add_argument("--dry-run", action="store_true", help="decode and count, write nothing")
    r.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )
    r.set_defaults(func=replay_command)


def _settings(args: argparse.Namespace, **defaults: Any) -> Settings:
    flags = {
        k: v
        for k, v in vars(args).items()
        if k
        not in (
            "func",
            "command",
            "paths",
            "dry_run",
            "progress",
            "dead_letter_queue",
            "quarantine",
            "organization",
            "any_organization",
        )
    }
    settings = Settings.from_env().replace(**flags)
    from wahook.runtime.logs import configure_logging, route_stdlib
    from wahook.runtime.tuning import tune_gc

    level = defaults.get("log_level") or settings.log_level
    configure_logging(settings.log_format, level)
    route_stdlib(level)  # botocore's records too: same stream, same redaction
    tune_gc(settings.gc_threshold)
    return settings


# --- worker ---------------------------------------------------------------------------


def worker_command(args: argparse.Namespace) -> int:
    # Errors are one line from `wahook.cli.main` (2 for settings, 1 for the outside world).
    settings = _settings(args)
    if not settings.queue_url:
        raise ConfigError("no queue: set WAHOOK_QUEUE_URL (or SQS_QUEUE_URL) or --queue-url")
    if not settings.dsn:
        raise ConfigError("no database: set WAHOOK_DSN (or DB_HOST ...) or pass --dsn")
    from wahook.runtime.worker import run_worker

    return asyncio.run(run_worker(settings))


# --- replay ---------------------------------------------------------------------------


def _operator_verdict(args: argparse.Namespace) -> Verdict | None:
    if args.any_organization:
        return ANY
    if args.organization is not None:
        if args.organization <= 0:
            raise ConfigError(f"--organization must be an organization id, not {args.organization}")
        return Verdict.of({args.organization})
    return None


def replay_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args, log_level=args.log_level or "warning")
        if not args.dry_run and not settings.dsn:
            raise ConfigError("no database: set WAHOOK_DSN (or DB_HOST ...), --dsn, or --dry-run")
        if args.dead_letter_queue and not settings.dead_letter_queue_url:
            raise ConfigError("no dead-letter queue: set WAHOOK_DLQ_URL or pass --dlq-url")
        if args.dead_letter_queue and args.paths:
            raise ConfigError("give PATHs or --dead-letter-queue, not both")
        if not (args.paths or args.dead_letter_queue or args.quarantine):
            raise ConfigError("nothing to replay: give PATHs, --dead-letter-queue or --quarantine")
        if args.quarantine and args.dry_run:
            raise ConfigError("--quarantine writes by nature; it has no --dry-run")
        verdict = _operator_verdict(args)
        if args.paths and verdict is None:
            raise ConfigError(
                "files carry no signature: say whose data they are with --organization N"
                " or --any-organization"
            )
        show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
        from wahook.runtime.replay import run_replay

        return asyncio.run(
            run_replay(
                settings,
                args.paths,
                dry_run=args.dry_run,
                progress=show,
                dead_letter_queue=settings.dead_letter_queue_url
                if args.dead_letter_queue
                else None,
                quarantine=args.quarantine,
                verdict=verdict,
            )
        )
    except (WahookError, OSError) as exc:
        from wahook.cli import one_line

        print(f"wahook replay: {one_line(exc)}", file=sys.stderr)
        return 2
