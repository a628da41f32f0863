"""``wahook check``, ``send-test``, ``queue status|redrive``, ``logs``, ``dev aws``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from wahook.errors import ConfigError, WahookError
from wahook.ops.output import (
    EXIT_CODES,
    EXIT_OK,
    EXIT_UNHEALTHY,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Masker,
    Printer,
)

LOCAL_QUEUE = "http://127.0.0.1:5000/123456789012/wahook"

CHECK_EPILOG = f"""\
examples:
  # a local `wahook serve` (its verify token and app secret are read from .wahook/)
  wahook check http://127.0.0.1:8080/webhook
  # a deployment, with the database and the queue
  export WEBHOOK_VERIFY_TOKEN=... WEBHOOK_SECRET=...
  wahook check https://abc123.execute-api.eu-west-1.amazonaws.com/webhook \\
      --dsn "$WAHOOK_DSN" --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/wahook
  wahook check http://127.0.0.1:8080/webhook --queue-url {LOCAL_QUEUE}

From the URL alone it finds: an unreachable endpoint or wrong path, webhook verification
failed (verify token), unsigned POSTs accepted, signed POSTs refused (app secret), and a
receiver that cannot queue (503). --dsn adds: database connection timeout, the sample not
stored in time (messages stuck), organization not found (--phone-number-id: yours; and any
traffic waiting in the quarantine for one). --queue-url adds: messages stuck (dead-letter
depth, age of the oldest message).

The sample comes from the reserved test phone number id 000000000000000: it is stored in
the quarantine as test traffic, never in an organization's tables.
{EXIT_CODES}
For check, an endpoint, database or queue that cannot be reached is a finding: status 1.
"""

SEND_TEST_EPILOG = f"""\
examples:
  wahook send-test http://127.0.0.1:8080/webhook --kind incoming
  wahook send-test http://127.0.0.1:8080/webhook --kind batch --dsn postgresql://postgres@127.0.0.1/whatsapp_db
  wahook send-test https://abc123.execute-api.eu-west-1.amazonaws.com/webhook \\
      --kind status --phone-number-id 106540352242922 --dsn "$WAHOOK_DSN"
  wahook send-test http://127.0.0.1:8080/webhook --kind verification

kinds: verification (the GET handshake), status (sent, delivered, read of one message),
incoming (a text), interactive (button and list replies), media (image, document, audio,
video, sticker), batch (10 messages and 20 statuses in one POST). Each run makes fresh
wamids. Without --phone-number-id (or PHONE_NUMBER_ID) they come from the reserved test id
and are quarantined as test traffic; with your organization's id they are stored as its own.
With --dsn it waits (up to --wait seconds) for the rows and prints them.
{EXIT_CODES}
"""

QUEUE_STATUS_EPILOG = f"""\
examples:
  wahook queue status --queue-url {LOCAL_QUEUE}
  wahook queue status --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/wahook --json
  wahook queue status --max-age 300 || alert   # 1 when the DLQ holds messages or one is older

The age of the oldest message is CloudWatch's ApproximateAgeOfOldestMessage (the latest
minute in the last 15); messages are never received (that counts toward the DLQ limit).
The dead-letter queue is found from the queue's redrive policy (or --dlq-url).
{EXIT_CODES}
"""

REDRIVE_EPILOG = f"""\
examples:
  wahook queue redrive --queue-url {LOCAL_QUEUE} --dry-run
  wahook queue redrive --queue-url {LOCAL_QUEUE} --limit 100
  wahook queue redrive --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/wahook

Each message is copied to the source queue with its body and every message attribute, and
deleted from the dead-letter queue only once its copy was accepted. Fix what failed first
(`wahook logs processor --filter ERROR`), or the messages come back.
{EXIT_CODES}
"""

LOGS_EPILOG = f"""\
examples:
  wahook logs processor --function wahook-processor-production --filter ERROR
  wahook logs receiver --log-group /aws/lambda/wahook-receiver-development --follow
  WAHOOK_PROCESSOR_FUNCTION=wahook-processor-production wahook logs processor --since 3600

The log group comes from --log-group, else --function (/aws/lambda/NAME), else
WAHOOK_RECEIVER_LOG_GROUP / WAHOOK_PROCESSOR_LOG_GROUP, else WAHOOK_RECEIVER_FUNCTION /
WAHOOK_PROCESSOR_FUNCTION. --filter is a CloudWatch filter pattern. --follow polls until
Ctrl-C (or --for seconds). Secrets found in log lines are masked.
{EXIT_CODES}
"""

DEV_AWS_EPILOG = f"""\
examples:
  wahook dev aws                      # moto on 127.0.0.1:5000, queue + dead-letter queue
  wahook dev aws --port 5001 --name staging

Then, in other terminals, the commands it prints, e.g.
  wahook worker --queue-url {LOCAL_QUEUE} --dsn postgresql://postgres@127.0.0.1:5432/whatsapp_db
  wahook serve --queue-url {LOCAL_QUEUE}
Needs moto: pip install 'wahook[localaws]'.
"""


def _aws_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", dest="aws_region", metavar="REGION", help="default: AWS_REGION")
    p.add_argument(
        "--endpoint-url",
        dest="aws_endpoint_url",
        metavar="URL",
        help="AWS endpoint (default: WAHOOK_AWS_ENDPOINT_URL, AWS_ENDPOINT_URL, else a "
        "non-AWS queue URL's own host)",
    )


def _queue_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue-url", metavar="URL", help="default: WAHOOK_QUEUE_URL/SQS_QUEUE_URL")
    p.add_argument("--dlq-url", metavar="URL", help="default: the queue's redrive policy")
    _aws_flags(p)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter

    check = sub.add_parser(
        "check",
        help="verify a deployed webhook endpoint (handshake, signatures, storage, queue)",
        description="Meta's handshake, an unsigned POST (must be refused) and a signed "
        "sample POST (must be accepted), timed; with --dsn / --queue-url, the database and "
        "the queue too. Every failure comes with its likely cause and fix.",
        epilog=CHECK_EPILOG,
        formatter_class=fmt,
    )
    check.add_argument("url", metavar="URL", help="the webhook URL, ending in /webhook")
    check.add_argument("--dsn", help="PostgreSQL DSN: see the sample stored (default: WAHOOK_DSN)")
    check.add_argument(
        "--phone-number-id", metavar="ID", help="your organization's id: check it is active"
    )
    check.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the sample's row (default 30)",
    )
    check.add_argument(
        "--max-age",
        type=float,
        default=300.0,
        metavar="S",
        help="oldest queued message allowed, seconds (default 300)",
    )
    check.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="per HTTP request (default 30)"
    )
    check.add_argument("--data-dir", help="a local `wahook serve`'s data (.wahook)")
    _queue_flags(check)
    check.set_defaults(func=check_command)

    send = sub.add_parser(
        "send-test",
        help="send realistic signed webhooks of one kind, and show the rows they made",
        description="Sign and POST realistic webhooks of one kind (the original design's "
        "test commands); with --dsn, wait for and print the rows they produced.",
        epilog=SEND_TEST_EPILOG,
        formatter_class=fmt,
    )
    send.add_argument("url", metavar="URL", help="the webhook URL, ending in /webhook")
    send.add_argument("--kind", required=True, choices=_kinds())
    send.add_argument(
        "--phone-number-id",
        metavar="ID",
        help="default: PHONE_NUMBER_ID, else the reserved test id",
    )
    send.add_argument(
        "--waba-id", metavar="ID", help="default: BUSINESS_ACCOUNT_ID, else the reserved test id"
    )
    send.add_argument("--dsn", help="wait for and print the rows (default: WAHOOK_DSN)")
    send.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the rows (default 30)",
    )
    send.add_argument("--timeout", type=float, default=30.0, metavar="S")
    send.add_argument("--data-dir", help="a local `wahook serve`'s data (.wahook)")
    send.set_defaults(func=send_test_command)

    queue = sub.add_parser("queue", help="the SQS queue: status, dead-letter redrive")
    queue_sub = queue.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    status = queue_sub.add_parser(
        "status",
        help="depth, in flight, delayed, dead-letter depth, age of the oldest message",
        description="The queue's and its dead-letter queue's figures, without receiving.",
        epilog=QUEUE_STATUS_EPILOG,
        formatter_class=fmt,
    )
    _queue_flags(status)
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.add_argument(
        "--max-age", type=float, metavar="S", help="exit 1 when the oldest message is older"
    )
    status.set_defaults(func=queue_status_command)
    redrive = queue_sub.add_parser(
        "redrive",
        help="move dead-letter messages back to the queue",
        description="Copy dead-letter messages (body and all attributes) to the source "
        "queue, deleting each only after its copy was accepted.",
        epilog=REDRIVE_EPILOG,
        formatter_class=fmt,
    )
    _queue_flags(redrive)
    redrive.add_argument("--limit", type=int, metavar="N", help="at most N messages")
    redrive.add_argument("--dry-run", action="store_true", help="count only; receive nothing")
    redrive.set_defaults(func=redrive_command)

    logs = sub.add_parser(
        "logs",
        help="the receiver's or processor's CloudWatch logs",
        description="Recent CloudWatch log events of the receiver or processor Lambda, "
        "optionally filtered, optionally followed.",
        epilog=LOGS_EPILOG,
        formatter_class=fmt,
    )
    logs.add_argument("role", choices=("receiver", "processor"))
    logs.add_argument("--function", metavar="NAME", help="the Lambda function's name")
    logs.add_argument("--log-group", metavar="NAME", help="the log group (wins over --function)")
    logs.add_argument("--filter", metavar="PATTERN", help="CloudWatch filter pattern, e.g. ERROR")
    logs.add_argument(
        "--since",
        type=float,
        default=600.0,
        metavar="S",
        help="start this many seconds ago (default 600)",
    )
    logs.add_argument("--follow", action="store_true", help="keep polling for new events")
    logs.add_argument("--poll", type=float, default=2.0, metavar="S", help="follow interval")
    logs.add_argument(
        "--for", dest="stop_after", type=float, metavar="S", help="stop following after S seconds"
    )
    _aws_flags(logs)
    logs.set_defaults(func=logs_command)

    dev = sub.add_parser("dev", help="local development helpers")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="COMMAND", required=True)
    aws = dev_sub.add_parser(
        "aws",
        help="moto's server on 127.0.0.1 with the queue and dead-letter queue",
        description="A local AWS (moto: SQS, CloudWatch, Logs) on a loopback address, with "
        "the queue and its dead-letter queue created; prints the commands to run against it.",
        epilog=DEV_AWS_EPILOG,
        formatter_class=fmt,
    )
    aws.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    aws.add_argument("--port", type=int, default=5000, help="default 5000")
    aws.add_argument("--name", default="wahook", help="queue name (default wahook)")
    aws.set_defaults(func=dev_aws_command)


def _kinds() -> tuple[str, ...]:
    from wahook.ops.send_test import KINDS

    return KINDS


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from wahook.settings import Settings

    return Settings.from_env().replace(
        aws_region=getattr(args, "aws_region", None),
        aws_endpoint_url=getattr(args, "aws_endpoint_url", None),
        dsn=getattr(args, "dsn", None),
        data_dir=getattr(args, "data_dir", None),
        **extra,
    )


def _run(
    name: str, args: argparse.Namespace, body: Callable[[Any, Printer], Coroutine[Any, Any, int]]
) -> int:
    """Settings, a masking printer, and one-line errors with the right exit status."""
    from wahook.ops.aws import describe, is_aws_error
    from wahook.ops.output import app_secret, verify_token

    try:
        settings = _settings(
            args,
            queue_url=getattr(args, "queue_url", None),
            dead_letter_queue_url=getattr(args, "dlq_url", None),
        )
    except WahookError as exc:
        print(f"wahook {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    mask = Masker.from_settings(settings)
    mask.add(verify_token(settings), app_secret(settings))
    printer = Printer(mask)
    try:
        return asyncio.run(body(settings, printer))
    except ConfigError as exc:
        printer.error(f"wahook {name}: {exc}")
        return EXIT_USAGE
    except Exception as exc:
        if is_aws_error(exc):
            printer.error(f"wahook {name}: {describe(exc)}")
            return EXIT_UNREACHABLE
        if isinstance(exc, OSError | WahookError) or type(exc).__module__.startswith("asyncpg"):
            printer.error(f"wahook {name}: {type(exc).__name__}: {exc}")
            return EXIT_UNREACHABLE
        raise


def _need_queue(settings: Any, name: str) -> str:
    if not settings.queue_url:
        raise ConfigError(f"give --queue-url (or set WAHOOK_QUEUE_URL) for `wahook {name}`")
    return str(settings.queue_url)


def check_command(args: argparse.Namespace) -> int:
    from wahook.ops.check import plan_from, report, run_check

    async def body(settings: Any, printer: Printer) -> int:
        plan = plan_from(
            settings,
            args.url,
            dsn=settings.dsn,
            queue_url=settings.queue_url,
            dlq_url=settings.dead_letter_queue_url,
            phone_number_id=args.phone_number_id,
            wait=args.wait,
            max_age=args.max_age,
            timeout=args.timeout,
        )
        return report(await run_check(settings, plan, printer.progress), printer, args.url)

    return _run("check", args, body)


def send_test_command(args: argparse.Namespace) -> int:
    from wahook.ops import http
    from wahook.ops.output import app_secret, verify_token
    from wahook.ops.send_test import Builder, format_rows
    from wahook.receiver import samples

    async def body(settings: Any, printer: Printer) -> int:
        if args.kind == "verification":
            token = verify_token(settings)
            if not token:
                raise ConfigError("set WEBHOOK_VERIFY_TOKEN to the deployment's verify token")
            answer, challenge = await asyncio.to_thread(
                http.handshake, args.url, token, args.timeout
            )
            ok = answer.status == 200 and answer.body.strip() == challenge
            printer.line(
                f"verification  {answer.status or answer.error}  "
                f"{'challenge echoed' if ok else repr(answer.body[:80])}  ({answer.ms})"
            )
            return EXIT_OK if ok else EXIT_UNHEALTHY
        secret = app_secret(settings)
        if not secret:
            raise ConfigError("set WEBHOOK_SECRET to the deployment's app secret")
        phone = args.phone_number_id or os.environ.get("PHONE_NUMBER_ID")
        waba = args.waba_id or os.environ.get("BUSINESS_ACCOUNT_ID")
        builder = Builder(phone or samples.TEST_PHONE_NUMBER_ID, waba or samples.TEST_WABA_ID)
        sent: list[str] = []
        failed = 0
        bodies = builder.bodies(args.kind)
        for i, (what, data, wamids) in enumerate(bodies, 1):
            answer = await asyncio.to_thread(http.post, args.url, data, secret, args.timeout)
            printer.line(
                f"[{i}/{len(bodies)}] {what:<36} {answer.status or answer.error} "
                f"{answer.body.strip()[:40]}  ({answer.ms}, {len(data)} bytes)"
            )
            if answer.status == 200:
                sent += wamids
            else:
                failed += 1
        printer.line(f"wamids: {', '.join(dict.fromkeys(sent)) or 'none accepted'}")
        if not settings.dsn or not sent:
            return EXIT_UNHEALTHY if failed else EXIT_OK
        import asyncpg

        from wahook.ops.rows import found, wait_for_rows

        conn = await asyncpg.connect(settings.dsn, timeout=10)
        try:
            printer.progress(f"waiting up to {args.wait:g} s for the rows ...")
            rows = await wait_for_rows(conn, list(dict.fromkeys(sent)), args.wait)
        finally:
            await conn.close()
        for line in format_rows(rows):
            printer.line(line)
        missing = set(sent) - found(rows)
        if missing:
            printer.line(
                f"not stored after {args.wait:g} s: {', '.join(sorted(missing))} "
                "(messages stuck? `wahook queue status`, `wahook logs processor`)"
            )
        return EXIT_UNHEALTHY if failed or missing else EXIT_OK

    return _run("send-test", args, body)


def queue_status_command(args: argparse.Namespace) -> int:
    import json

    from wahook.ops.queue import format_status, queue_status

    async def body(settings: Any, printer: Printer) -> int:
        queue_url = _need_queue(settings, "queue status")
        status = await queue_status(settings, queue_url, settings.dead_letter_queue_url)
        problems = status.problems(args.max_age)
        if args.json:
            printer.line(json.dumps({**status.as_dict(), "problems": problems}))
        else:
            for line in format_status(status):
                printer.line(line)
            for problem in problems:
                printer.line(f"unhealthy: {problem}")
        return EXIT_UNHEALTHY if problems else EXIT_OK

    return _run("queue status", args, body)


def redrive_command(args: argparse.Namespace) -> int:
    from wahook.ops.queue import RedriveResult, redrive

    if args.limit is not None and args.limit < 1:
        print("wahook queue redrive: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE

    async def body(settings: Any, printer: Printer) -> int:
        queue_url = _need_queue(settings, "queue redrive")

        def progress(r: RedriveResult) -> None:
            printer.progress(f"redrive: {r.moved} moved, {r.failed} refused")

        result = await redrive(
            settings,
            queue_url,
            settings.dead_letter_queue_url,
            limit=args.limit,
            dry_run=args.dry_run,
            progress=progress,
        )
        if args.dry_run:
            printer.line(f"dry run: would move {result.would_move} messages to {queue_url}")
            return EXIT_OK
        printer.line(
            f"redrive: {result.moved} messages moved to {queue_url}, "
            f"{result.failed} refused (left in the dead-letter queue)"
        )
        if result.reason:
            printer.line(f"refused: {result.reason}")
        return EXIT_UNHEALTHY if result.failed else EXIT_OK

    return _run("queue redrive", args, body)


def logs_command(args: argparse.Namespace) -> int:
    from wahook.ops.logs import format_event, log_group, tail

    group = log_group(args.role, os.environ, group=args.log_group, function=args.function)
    if group is None:
        role = args.role.upper()
        print(
            f"wahook logs: name the {args.role}'s log group: --log-group, --function, "
            f"WAHOOK_{role}_LOG_GROUP or WAHOOK_{role}_FUNCTION",
            file=sys.stderr,
        )
        return EXIT_USAGE

    async def body(settings: Any, printer: Printer) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            n = await tail(
                settings,
                group,
                lambda e: printer.line(format_event(e)),
                since=args.since,
                pattern=args.filter,
                follow=args.follow,
                poll=args.poll,
                stop_after=args.stop_after,
                stop=stop,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        printer.error(f"wahook logs: {n} events from {group}")
        return EXIT_OK

    return _run("logs", args, body)


def dev_aws_command(args: argparse.Namespace) -> int:
    from wahook.ops.local_aws import run
    from wahook.settings import Settings

    try:
        settings = Settings.from_env()
        printer = Printer(Masker.from_settings(settings))
        run(args.host, args.port, settings.dsn, printer.line)
    except (ValueError, ModuleNotFoundError) as exc:
        print(f"wahook dev aws: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the port is taken ...
        print(f"wahook dev aws: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK
