"""`wahook package`: the Lambda deployment artifacts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wahook.errors import WahookError

PACKAGE_EPILOG = """\
examples:
  wahook package                                  # this Python, x86_64, into build/lambda/
  wahook package -o build/lambda --python 3.13 --arch arm64
  wahook package --no-receiver-asyncpg            # receiver without per-organization secrets
  wahook package --bundle-botocore                # pin the botocore installed here
  sam deploy --guided --template-file build/lambda/template.yaml

Writes DIR/receiver.zip (wahook.receiver.lambda_handler.handler), DIR/processor.zip
(wahook.runtime.lambda_sqs.handler and wahook.deploy.migrate_resource.handler) and
DIR/template.yaml, whose CodeUri entries name the two zips. The runtime and architecture
you deploy must be the ones built for: asyncpg and msgspec are native code.

Wheels come from pip's configured index (pip config list; PIP_INDEX_URL, PIP_FIND_LINKS
work), pinned to the versions installed here. botocore is not bundled unless asked: the
Lambda runtime provides it. Two builds from the same environment are byte-identical
(SOURCE_DATE_EPOCH sets the zip timestamps).

exit codes: 0 built, 1 could not build (no wheel for the target, pip failed),
2 bad arguments, 3 package index unreachable.
"""


def _default_python() -> str:
    from wahook.deploy.package import RUNTIME_GLIBC

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return here if here in RUNTIME_GLIBC else max(RUNTIME_GLIBC, key=lambda v: int(v[2:]))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from wahook.deploy.package import ARCHITECTURES, RUNTIME_GLIBC

    default_python = _default_python()
    package = sub.add_parser(
        "package",
        help="build the Lambda packages (receiver.zip, processor.zip) and the SAM template",
        description="Build the receiver and processor Lambda packages for a Python runtime\n"
        "and architecture from manylinux wheels, and copy the SAM template beside them.",
        epilog=PACKAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    package.add_argument(
        "-o", "--output", default="build/lambda", metavar="DIR",
        help="directory to write into (created if missing; default build/lambda)",
    )  # fmt: skip
    package.add_argument(
        "--python", choices=list(RUNTIME_GLIBC), default=default_python,
        help=f"Lambda Python runtime version (default {default_python})",
    )  # fmt: skip
    package.add_argument(
        "--arch", choices=list(ARCHITECTURES), default="x86_64",
        help="Lambda architecture (default x86_64)",
    )  # fmt: skip
    package.add_argument(
        "--no-receiver-asyncpg", dest="receiver_asyncpg", action="store_false",
        help="leave asyncpg out of receiver.zip: only for a receiver without WAHOOK_DSN "
        "(deployment-wide secrets only; per-organization secrets need the database)",
    )  # fmt: skip
    package.add_argument(
        "--bundle-botocore", action="store_true",
        help="bundle the botocore installed here (and its dependencies) instead of "
        "using the Lambda runtime's",
    )  # fmt: skip
    package.set_defaults(func=run_package)


def run_package(args: argparse.Namespace) -> int:
    from wahook.deploy.package import PackageError, Target, build

    out = Path(args.output)
    try:
        target = Target(args.python, args.arch)
        built = build(
            out,
            target,
            receiver_asyncpg=args.receiver_asyncpg,
            bundle_botocore=args.bundle_botocore,
            say=lambda line: print(line, flush=True),
        )
    except PackageError as exc:
        print(f"wahook: {exc}", file=sys.stderr)
        return exc.exit_code
    except (WahookError, OSError) as exc:
        print(f"wahook: {exc}", file=sys.stderr)
        return 1
    total = sum(b.size for b in built) / 1024 / 1024
    print(f"built for {target.runtime} {target.arch}: "
          f"{', '.join(str(b.path) for b in built)} ({total:.1f} MB)")  # fmt: skip
    if (out / "template.yaml").is_file():
        print(f"deploy: sam deploy --guided --template-file {out / 'template.yaml'}")
    return 0
