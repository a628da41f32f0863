"""The ``wahook`` command line: a thin dispatcher.

Each command lives beside the code it drives and registers itself through an
``add_command(subparsers)`` function, imported only when the CLI starts, so the library
modules never depend on argparse.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# (module, function) pairs; each function adds one or more subcommands.
_COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("wahook.receiver.commands", "add_commands"),
    ("wahook.runtime.commands", "add_commands"),
    ("wahook.sinks.commands", "add_commands"),
    ("wahook.deploy.commands", "add_commands"),
    ("wahook.ops.commands", "add_commands"),
)

EPILOG = """\
examples:
  wahook serve                       # receiver + pipeline on an embedded PostgreSQL
  wahook migrate --dsn postgresql://postgres@127.0.0.1/whatsapp_db
  wahook worker --queue-url http://127.0.0.1:5000/123456789012/wahook
  wahook replay bodies.jsonl --any-organization --dry-run
  wahook stats
  wahook dev aws                     # SQS + dead-letter queue on 127.0.0.1:5000 (moto)
  wahook package -o build/lambda --python 3.12 --arch arm64   # the Lambda zips + template
  wahook check https://abc123.execute-api.eu-west-1.amazonaws.com/webhook
  wahook queue status --queue-url http://127.0.0.1:5000/123456789012/wahook
"""


def whole(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number in ``[low, high]``."""
    from wahook.settings import whole_number

    def parse(text: str) -> int:
        try:
            return whole_number(text, low=low, high=high)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def duration(*, positive: bool = True) -> Callable[[str], float]:
    """An argparse ``type`` for a number of seconds."""
    from wahook.settings import seconds

    def parse(text: str) -> float:
        try:
            return seconds(text, positive=positive)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


PORT = whole(0, 65535)


def build_parser() -> argparse.ArgumentParser:
    from wahook import __version__

    parser = argparse.ArgumentParser(
        prog="wahook",
        description="WhatsApp Cloud API webhooks into PostgreSQL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wahook {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, func_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A command module that is not there yet, or whose extra is not installed,
            # simply contributes no commands.
            if exc.name is not None and (
                module_name.startswith(exc.name) or not exc.name.startswith("wahook")
            ):
                continue
            raise
        add: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = getattr(
            module, func_name
        )
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    name = " ".join(str(v) for v in (args.command, getattr(args, "org_command", None)) if v)
    try:
        return func(args)
    except KeyboardInterrupt:
        # A second Ctrl-C means "stop now": no traceback, the shell's usual status.
        print("wahook: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # What an operator can fix (a setting, a path, a database that is not there ...) is
        # one line and a status a script can gate on; anything else is a bug: a traceback.
        status = operator_error(exc)
        if status is None:
            raise
        print(f"wahook {name}: {one_line(exc)}", file=sys.stderr)
        return status


# Exceptions of these packages' own trees are about the outside world (a database, a
# queue, credentials), never a wahook bug. Looked up only if the package is loaded already.
_OUTSIDE_ERRORS: tuple[tuple[str, str], ...] = (
    ("asyncpg", "PostgresError"),
    ("asyncpg", "InterfaceError"),
    ("asyncpg.exceptions", "PostgresLogError"),
    ("botocore.exceptions", "BotoCoreError"),
    ("botocore.exceptions", "ClientError"),
    ("aiohttp", "ClientError"),
)


def operator_error(exc: BaseException) -> int | None:
    """The exit status for an error the operator can act on: 2 for a setting or usage
    error, 1 for the rest (files, network, database); None for a bug."""
    from wahook.errors import ConfigError, WahookError

    if isinstance(exc, ConfigError):
        return 2
    if isinstance(exc, WahookError | OSError):
        return 1
    for module_name, class_name in _OUTSIDE_ERRORS:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return 1
    return None


def one_line(exc: BaseException) -> str:
    """The error as one line: ``path: reason`` for file errors, whitespace collapsed."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else type(exc).__name__
        text = f"{where}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
