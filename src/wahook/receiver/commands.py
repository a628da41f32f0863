"""`wahook serve` (the receiver on HTTP) and `wahook post` (sign and send a webhook)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path

from wahook.cli import PORT, duration, whole
from wahook.errors import ConfigError

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
    serve.add_argument("--port", type=PORT, help="port to listen on (default 8080)")
    serve.add_argument("--dsn", help="PostgreSQL DSN (default: WAHOOK_DSN, else embedded)")
    serve.add_argument("--queue-url", help="forward to this SQS queue instead of storing")
    serve.add_argument(
        "--endpoint-url",
        help="SQS endpoint (default: WAHOOK_AWS_ENDPOINT_URL, AWS_ENDPOINT_URL, else a "
        "non-AWS queue URL's own host)",
    )
    serve.add_argument("--data-dir", help="where local data lives (default .wahook)")
    serve.add_argument(
        "--grace", type=duration(positive=False), help="seconds to drain on stop (default 20)"
    )
    serve.add_argument(
        "--header-timeout",
        type=duration(),
        help="seconds a connection has to send a request head (default 10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=duration(),
        help="seconds a request has to send its body (default 30)",
    )
    serve.add_argument(
        "--max-connections",
        type=whole(0),
        help="open connections at most (default: the fd limit less 192)",
    )
    serve.add_argument("--connection-log-seconds", type=duration(),
                       help="log failed accepts and shed connections as counts, one line "
                       "per this many seconds (default 10)")  # fmt: skip
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
    post.add_argument("--messages", type=whole(0), default=1, help="messages in the sample")
    post.add_argument("--statuses", type=whole(0), default=1, help="statuses in the sample")
    post.add_argument(
        "--start", type=whole(0), default=0, help="number of the sample's first wamid"
    )
    post.add_argument("--url", default="http://127.0.0.1:8080/webhook")
    post.add_argument("--data-dir", help="where `wahook serve` keeps its data (.wahook)")
    post.set_defaults(func=run_post)


def _configure_logging(fmt: str, level: str) -> None:
    """The pipeline's structlog events, the receiver's stdlib ones and the libraries', one
    stream (stderr), one redaction."""
    from wahook.runtime.logs import configure_logging, route_stdlib

    configure_logging(fmt, level)
    route_stdlib(level)


def run_serve(args: argparse.Namespace) -> int:
    from wahook.receiver.serve import serve
    from wahook.settings import Settings

    # A bad setting, a taken port, a database that is not there ...: one line from
    # `wahook.cli.main`.
    settings = Settings.from_env().replace(
        host=args.host,
        port=args.port,
        dsn=args.dsn,
        queue_url=args.queue_url,
        aws_endpoint_url=args.endpoint_url,
        data_dir=args.data_dir,
        grace_seconds=args.grace,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        connection_log_seconds=args.connection_log_seconds,
    )
    _configure_logging(settings.log_format, settings.log_level)
    from wahook.runtime.tuning import tune_gc

    tune_gc(settings.gc_threshold)
    return asyncio.run(serve(settings))


def run_post(args: argparse.Namespace) -> int:
    from wahook.parse import sign
    from wahook.receiver import samples
    from wahook.settings import Settings

    settings = Settings.from_env().replace(data_dir=args.data_dir)
    if not args.url.startswith(("http://", "https://")):
        raise ConfigError(f"--url must be an http:// or https:// URL, got {args.url!r}")
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
