"""`wahook serve` (the receiver on HTTP) and `wahook post` (sign and send a webhook)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from wahook.errors import WahookError

SERVE_EPILOG = """\
examples:
  wahook serve                          # embedded PostgreSQL under .wahook/, in-process
  WEBHOOK_VERIFY_TOKEN=my-token WEBHOOK_SECRET=my-app-secret wahook serve
  wahook serve --dsn postgresql://postgres@127.0.0.1:5432/whatsapp_db
  wahook serve --queue-url http://127.0.0.1:5000/123456789012/wahook   # forward to SQS
  wahook serve --host 0.0.0.0 --port 9000

Meta's callback URL is https://<your public host>/webhook (a tunnel or reverse proxy in
front of this server). Health: /healthz, readiness: /readyz. Secrets come only from the
environment (WEBHOOK_VERIFY_TOKEN, WEBHOOK_SECRET) and the organizations table.
"""

POST_EPILOG = """\
examples:
  wahook post --sample                  # a text message and a status, signed, to :8080
  wahook post body.json                 # a body from a file, signed as Meta signs it
  wahook post --sample --messages 50 --start 100 --url http://127.0.0.1:9000/webhook
  cat body.json | wahook post -

The secret is WEBHOOK_SECRET (the first one), else the local test secret that
`wahook serve` keeps in <data dir>/app_secret.
"""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    serve = sub.add_parser(
        "serve",
        help="receive webhooks over HTTP and store them (or forward them to SQS)",
        description="The receiver on an HTTP server: verify, then store in-process or "
        "forward to SQS.",
        epilog=SERVE_EPILOG,
        formatter_class=fmt,
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--dsn", help="PostgreSQL DSN (default: WAHOOK_DSN, else embedded)")
    serve.add_argument("--queue-url", help="forward to this SQS queue instead of storing")
    serve.add_argument(
        "--endpoint-url",
        help="SQS endpoint (default: WAHOOK_AWS_ENDPOINT_URL, AWS_ENDPOINT_URL, else a "
        "non-AWS queue URL's own host)",
    )
    serve.add_argument("--data-dir", help="where local data lives (default .wahook)")
    serve.add_argument("--grace", type=float, help="seconds to drain on stop (default 20)")
    serve.set_defaults(func=run_serve)

    post = sub.add_parser(
        "post",
        help="sign a webhook body as Meta does and POST it",
        description="Sign a body with the app secret (X-Hub-Signature-256) and POST it.",
        epilog=POST_EPILOG,
        formatter_class=fmt,
    )
    post.add_argument("file", nargs="?", help="body file, or - for stdin")
    post.add_argument("--sample", action="store_true", help="post a built-in sample body")
    post.add_argument("--messages", type=int, default=1, help="messages in the sample")
    post.add_argument("--statuses", type=int, default=1, help="statuses in the sample")
    post.add_argument("--start", type=int, default=0, help="number of the sample's first wamid")
    post.add_argument("--url", default="http://127.0.0.1:8080/webhook")
    post.add_argument("--data-dir", help="where `wahook serve` keeps its data (.wahook)")
    post.set_defaults(func=run_post)


_FIELD = re.compile(r"(?:^| )(\w+)=")


class _ToStructlog(logging.Handler):
    """The receiver logs ``event key=value ...`` through the stdlib (the Lambda handler must
    not import structlog); under ``wahook serve`` they join the pipeline's structlog events,
    in the same format and through the same redaction."""

    def emit(self, record: logging.LogRecord) -> None:
        import structlog

        event, _, rest = record.getMessage().partition(" ")
        marks = list(_FIELD.finditer(rest))
        fields: dict[str, Any] = {
            m.group(1): rest[m.end() : marks[i + 1].start() if i + 1 < len(marks) else None]
            for i, m in enumerate(marks)
        }
        fields["logger"] = record.name
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        structlog.get_logger().log(record.levelno, event, **fields)


def _configure_logging(fmt: str, level: str) -> None:
    """The pipeline's structlog events and the receiver's stdlib ones, one stream (stderr)."""
    from wahook.runtime.logs import configure_logging

    configure_logging(fmt, level)
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.handlers[:] = [_ToStructlog()]


def run_serve(args: argparse.Namespace) -> int:
    from wahook.receiver.serve import serve
    from wahook.settings import Settings

    try:
        settings = Settings.from_env().replace(
            host=args.host,
            port=args.port,
            dsn=args.dsn,
            queue_url=args.queue_url,
            aws_endpoint_url=args.endpoint_url,
            data_dir=args.data_dir,
            grace_seconds=args.grace,
        )
        _configure_logging(settings.log_format, settings.log_level)
        from wahook.runtime.tuning import tune_gc

        tune_gc(settings.gc_threshold)
        return asyncio.run(serve(settings))
    except WahookError as exc:
        print(f"wahook serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, the data dir is not writable ...
        print(f"wahook serve: {exc}", file=sys.stderr)
        return 1


def run_post(args: argparse.Namespace) -> int:
    from wahook.parse import sign
    from wahook.receiver import samples
    from wahook.settings import Settings

    settings = Settings.from_env().replace(data_dir=args.data_dir)
    if args.sample:
        body = samples.sample(args.messages, args.statuses, start=args.start)
    elif args.file == "-":
        body = sys.stdin.buffer.read()
    elif args.file:
        body = Path(args.file).read_bytes()
    else:
        print("wahook post: give a FILE, - for stdin, or --sample", file=sys.stderr)
        return 2
    if settings.app_secrets:
        secret = settings.app_secrets[0]
    else:
        path = Path(settings.data_dir, "app_secret")
        if not path.exists():
            print(f"wahook post: set WEBHOOK_SECRET (no {path} either)", file=sys.stderr)
            return 2
        secret = path.read_text().strip()
    request = urllib.request.Request(
        args.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        print(f"wahook post: {args.url}: {exc.reason}", file=sys.stderr)
        return 1
    print(f"{status} {text}  ({len(body)} bytes to {args.url})")
    return 0 if status == 200 else 1
