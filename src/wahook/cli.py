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
    ("wahook.ops.commands", "add_commands"),
)

EPILOG = """\
examples:
  wahook serve                       # receiver + pipeline on an embedded PostgreSQL
  wahook migrate --dsn postgresql://postgres@127.0.0.1/whatsapp_db
  wahook worker --queue-url http://127.0.0.1:5000/123456789012/wahook
  wahook replay bodies.jsonl --dry-run
  wahook stats
"""


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
    try:
        return func(args)
    except KeyboardInterrupt:
        # A second Ctrl-C means "stop now": no traceback, the shell's usual status.
        print("wahook: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
