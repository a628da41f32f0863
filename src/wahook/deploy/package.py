"""The Lambda deployment packages: ``receiver.zip`` and ``processor.zip``, built from wheels.

>>> build(Path("build/lambda"), Target("3.12", "arm64"))   # what `wahook package` does

Each zip unpacks to ``/var/task`` (on the function's ``sys.path``): wahook's own package
files, copied from the installed distribution (so a pip user needs no checkout), and the
third-party packages each function imports, unpacked from manylinux wheels for the target
runtime's Python and architecture, which pip downloads from its configured index
(``pip download --only-binary=:all: --platform ... --python-version ... --implementation cp``).
That is how asyncpg's and msgspec's native extensions match the Lambda runtime whatever
machine builds them.

- receiver (``wahook.receiver.lambda_handler.handler``): msgspec; asyncpg too unless left
  out, because with ``WAHOOK_DSN`` set the receiver loads the organizations' verify tokens
  and app secrets from the database (it imports asyncpg then, on the first request, not at
  cold start). Never aiohttp, aiobotocore or structlog.
- processor (``wahook.runtime.lambda_sqs.handler``, and the schema migration custom
  resource ``wahook.deploy.migrate_resource.handler``): msgspec, asyncpg, structlog.
- botocore: not bundled unless asked. The Lambda Python runtimes carry boto3/botocore, and
  the receiver uses only ``botocore.session`` and ``botocore.config.Config``, stable for
  years; bundling would add megabytes to every cold start for nothing. ``bundle_botocore``
  puts the botocore installed here (and its dependencies) in both zips, ahead of the
  runtime's copy on ``sys.path``, for teams that pin their SDK.

Versions are pinned to what is installed here (what was tested), else to wahook's
requirement; every other installed distribution is a constraint, so dependencies pulled
in (botocore's) are the installed ones too. Two builds from the same environment are
byte-identical: entries sorted, one timestamp (``SOURCE_DATE_EPOCH`` if set, else
1980-01-01), normalised permissions, no ``__pycache__`` or ``.pyc``, no build paths.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path

from wahook.errors import WahookError

# glibc of each Lambda Python runtime's OS: Amazon Linux 2 (2.26) for 3.11, Amazon Linux
# 2023 (2.34) for 3.12 and later. Wheels for any manylinux at or below it run there.
RUNTIME_GLIBC: Mapping[str, int] = {"3.11": 26, "3.12": 34, "3.13": 34, "3.14": 34}
# Lambda's architecture names -> the wheel platform tags' machine names.
ARCHITECTURES: Mapping[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}

# Lambda's code size limit for a function: the unzipped package.
UNZIPPED_LIMIT = 250 * 1024 * 1024

Say = Callable[[str], None]


class PackageError(WahookError):
    """The packages could not be built; ``exit_code`` is what `wahook package` returns."""

    exit_code = 1


class IndexUnreachable(PackageError):
    """pip could not reach the package index (no network, proxy, wrong index URL)."""

    exit_code = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A Lambda runtime: Python ``3.11`` to ``3.14`` on ``x86_64`` or ``arm64``."""

    python: str
    arch: str

    def __post_init__(self) -> None:
        if self.python not in RUNTIME_GLIBC:
            known = ", ".join(RUNTIME_GLIBC)
            raise PackageError(f"no Lambda runtime python{self.python}: choose one of {known}")
        if self.arch not in ARCHITECTURES:
            known = ", ".join(ARCHITECTURES)
            raise PackageError(f"unknown Lambda architecture {self.arch!r}: choose {known}")

    @property
    def runtime(self) -> str:
        return f"python{self.python}"

    def platforms(self) -> list[str]:
        """Wheel platform tags the runtime can load, most specific first (pip 23 does not
        derive the PEP 600 ``manylinux_2_X`` tags from ``manylinux2014`` by itself)."""
        machine = ARCHITECTURES[self.arch]
        newest = RUNTIME_GLIBC[self.python]
        tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)]
        return [*tags, f"manylinux2014_{machine}"]


@dataclasses.dataclass(frozen=True, slots=True)
class Function:
    """One Lambda function's package: its name (``<name>.zip``), handlers, and the
    distributions its handlers import."""

    name: str
    handlers: tuple[str, ...]
    requirements: tuple[str, ...]


RECEIVER = Function("receiver", ("wahook.receiver.lambda_handler.handler",), ("msgspec", "asyncpg"))
PROCESSOR = Function(
    "processor",
    ("wahook.runtime.lambda_sqs.handler", "wahook.deploy.migrate_resource.handler"),
    ("msgspec", "asyncpg", "structlog"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    data: bytes
    executable: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Built:
    """A package written: where, how big zipped and unpacked, what it bundles."""

    path: Path
    size: int
    unpacked: int
    files: int
    distributions: tuple[str, ...]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wahook_requirements() -> dict[str, str]:
    """wahook's own requirement per distribution (``asyncpg>=0.29``), markers dropped."""
    out: dict[str, str] = {}
    for req in importlib.metadata.requires("wahook") or ():
        spec = req.split(";", 1)[0].strip()
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
        if match and "[" not in spec:
            out.setdefault(_normalize(match.group(0)), spec)
    return out


def pins(names: Iterable[str]) -> list[str]:
    """``name==<installed version>`` for each name, else wahook's requirement for it."""
    wanted = _wahook_requirements()
    out = []
    for name in names:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(wanted.get(_normalize(name), name))
    return out


# A public release version (PEP 440 without local labels such as ``+cpu``): one an index
# can serve, and one pip's constraint parser accepts.
_RELEASE = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


def installed_constraints() -> str:
    """Every distribution installed here but wahook, as ``name==version`` lines."""
    lines = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _normalize(name) != "wahook" and _RELEASE.fullmatch(dist.version or ""):
            lines.add(f"{name}=={dist.version}")
    return "".join(f"{line}\n" for line in sorted(lines))


_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|NameResolutionError"
    r"|Temporary failure in name resolution|ConnectTimeoutError|ProxyError"
    r"|Connection refused|Network is unreachable|Could not fetch URL"
)
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


def _pip_failure(stderr: str, target: Target, stdout: str = "") -> PackageError:
    """One line from pip's many: what failed and what to do."""
    if _NETWORK.search(stderr):
        # pip names the index only when it is not PyPI's.
        named = re.search(r"Looking in indexes: ([^\n]+)", stdout + stderr)
        where = named.group(1).strip() if named else "https://pypi.org/simple"
        return IndexUnreachable(
            f"cannot reach the package index ({where}): check the network, a proxy, "
            "or pip's index-url / find-links (pip config list)"
        )
    missing = _NO_MATCH.search(stderr)
    if missing:
        return PackageError(
            f"no {missing.group(1)} wheel for {target.runtime} {target.arch} "
            "(manylinux) on the package index: choose another --python/--arch, or install a "
            "version that has one and build again"
        )
    # pip's first error says what went wrong (a conflict names the versions); the later
    # ones point at its documentation.
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith("ERROR:")), lines[-1] if lines else "")
    return PackageError(f"pip download failed: {first or 'no output'}")


def fetch_wheels(
    requirements: Iterable[str], target: Target, dest: Path, *, constraints: str = ""
) -> list[Path]:
    """Download the wheels of ``requirements`` and their dependencies for ``target`` into
    ``dest`` (pip's index, cache and configuration apply); the wheel paths, sorted."""
    if importlib.util.find_spec("pip") is None:
        raise PackageError("pip is not installed in this environment: install pip, then retry")
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
    for platform in target.platforms():
        command += ["--platform", platform]
    command += ["--python-version", target.python, "--implementation", "cp"]
    command += ["--dest", str(dest), "--progress-bar", "off", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(prefix="wahook-pins-") as tmp:
        if constraints:
            path = Path(tmp, "constraints.txt")
            path.write_text(constraints)
            command += ["--constraint", str(path)]
        done = subprocess.run(
            [*command, *requirements], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise _pip_failure(done.stderr, target, done.stdout)
    return sorted(dest.glob("*.whl"))


_SKIP = re.compile(r"(^|/)__pycache__/|\.py[co]$")


def wheel_entries(wheel: Path) -> dict[str, Entry]:
    """A wheel's files as installed into one directory: ``*.data/purelib`` and
    ``platlib`` at the top, other ``.data`` parts (scripts, headers) left out."""
    out: dict[str, Entry] = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or _SKIP.search(name):
                continue
            top, _, rest = name.partition("/")
            if top.endswith(".data"):
                kind, _, rest = rest.partition("/")
                if kind not in ("purelib", "platlib") or not rest:
                    continue
                name = rest
            mode = info.external_attr >> 16
            out[name] = Entry(zf.read(info), executable=bool(mode & 0o111))
    return out


def _walk(node: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.startswith(".") or child.name == "__pycache__":
            continue
        name = f"{prefix}/{child.name}"
        if child.is_dir():
            yield from _walk(child, name)
        elif not _SKIP.search(name):
            yield name, child


def wahook_entries() -> dict[str, Entry]:
    """wahook's package files as installed (a wheel install or an editable checkout alike),
    with its distribution's METADATA so ``importlib.metadata`` knows the deployed version."""
    out = {name: Entry(node.read_bytes()) for name, node in _walk(_package_root(), "wahook")}
    dist = importlib.metadata.distribution("wahook")
    metadata = dist.read_text("METADATA")
    if metadata:
        out[f"wahook-{dist.version}.dist-info/METADATA"] = Entry(metadata.encode())
    return out


def _package_root() -> Traversable:
    return importlib.resources.files("wahook")


def installed_template() -> Traversable | None:
    """The SAM template shipped as package data, when this installation has it."""
    node = importlib.resources.files("wahook").joinpath("deploy", "template.yaml")
    return node if node.is_file() else None


def zip_timestamp() -> tuple[int, int, int, int, int, int]:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org) if set, else zip's earliest date."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not raw.isdigit():
        return (1980, 1, 1, 0, 0, 0)
    stamp = time.gmtime(max(int(raw), 315532800))  # zip cannot say anything before 1980
    return (stamp.tm_year, stamp.tm_mon, stamp.tm_mday, stamp.tm_hour, stamp.tm_min,
            stamp.tm_sec)  # fmt: skip


def write_zip(entries: Mapping[str, Entry], path: Path) -> None:
    """Write ``entries`` in name order with one timestamp and normalised modes, atomically
    (a failed build leaves no half-written package behind)."""
    stamp = zip_timestamp()
    partial = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w") as zf:
            for name in sorted(entries):
                entry = entries[name]
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.create_system = 3  # unix, so external_attr's mode bits are read
                info.external_attr = (0o100755 if entry.executable else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, entry.data, compresslevel=6)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _dist_names(entries: Iterable[str]) -> tuple[str, ...]:
    found = set()
    for name in entries:
        top = name.split("/", 1)[0]
        if top.endswith(".dist-info"):
            name, _, version = top.removesuffix(".dist-info").rpartition("-")
            found.add(f"{name}=={version}")
    return tuple(sorted(found))


def assemble(
    function: Function, own: Mapping[str, Entry], wheels: Iterable[Path]
) -> dict[str, Entry]:
    """wahook's files plus every wheel's; two wheels may not disagree about a file."""
    entries = dict(own)
    origin = dict.fromkeys(own, "wahook")
    for wheel in wheels:
        for name, entry in wheel_entries(wheel).items():
            if name in entries and entries[name] != entry:
                raise PackageError(
                    f"{function.name}: {name} comes from both {origin[name]} and {wheel.name}"
                )
            entries[name] = entry
            origin[name] = wheel.name
    return entries


def build(
    out: Path,
    target: Target,
    *,
    receiver_asyncpg: bool = True,
    bundle_botocore: bool = False,
    template: Traversable | Path | None = None,
    say: Say = print,
) -> list[Built]:
    """Build ``receiver.zip`` and ``processor.zip`` for ``target`` into ``out`` and copy
    ``template`` (the installed SAM template when not given) beside them."""
    functions = [
        dataclasses.replace(
            RECEIVER,
            requirements=tuple(
                r for r in RECEIVER.requirements if receiver_asyncpg or r != "asyncpg"
            ),
        ),
        PROCESSOR,
    ]
    steps = len(functions) * 2 + 2
    step = iter(range(1, steps + 1))
    template = template if template is not None else installed_template()
    out.mkdir(parents=True, exist_ok=True)

    own = wahook_entries()
    say(f"[{next(step)}/{steps}] wahook {importlib.metadata.version('wahook')}: "
        f"{len(own)} files from {_package_root()}")  # fmt: skip
    constraints = installed_constraints()
    built: list[Built] = []
    with tempfile.TemporaryDirectory(prefix="wahook-wheels-") as tmp:
        for function in functions:
            wanted = pins([*function.requirements, *(["botocore"] if bundle_botocore else [])])
            say(f"[{next(step)}/{steps}] {function.name}: wheels for {target.runtime} "
                f"{target.arch}: {' '.join(wanted)}")  # fmt: skip
            wheels = fetch_wheels(wanted, target, Path(tmp, function.name), constraints=constraints)
            entries = assemble(function, own, wheels)
            path = out / f"{function.name}.zip"
            write_zip(entries, path)
            result = Built(
                path=path,
                size=path.stat().st_size,
                unpacked=sum(len(e.data) for e in entries.values()),
                files=len(entries),
                distributions=_dist_names(entries),
            )
            built.append(result)
            say(f"[{next(step)}/{steps}] {path}: {_mb(result.size)} zipped, "
                f"{_mb(result.unpacked)} unpacked, {result.files} files "
                f"({', '.join(result.distributions)})")  # fmt: skip
            if result.unpacked > UNZIPPED_LIMIT:
                raise PackageError(
                    f"{path.name} unpacks to {_mb(result.unpacked)}, over Lambda's "
                    f"{_mb(UNZIPPED_LIMIT)} limit"
                )
    say(f"[{next(step)}/{steps}] {_copy_template(template, out, target)}")
    return built


def _copy_template(template: Traversable | Path | None, out: Path, target: Target) -> str:
    if template is None:
        return "template.yaml: not in this wahook installation, not written"
    data = template.read_bytes()
    (out / "template.yaml").write_bytes(data)
    named = set(re.findall(rb"python3\.\d+", data))
    if named and target.runtime.encode() not in named:
        runtimes = ", ".join(sorted(n.decode() for n in named))
        return (f"{out / 'template.yaml'}: copied; WARNING: it names {runtimes}, "
                f"these packages are for {target.runtime}")  # fmt: skip
    return f"{out / 'template.yaml'}: copied"


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"
