"""`wahook package`: the Lambda zips built for this machine's Python and architecture, each
unpacked into an empty directory and run in a fresh interpreter that sees only that
directory and the standard library (plus, for the receiver, a botocore unpacked from its
wheel, as the Lambda runtime provides one): a signed API Gateway v2 event through the
receiver into SQS (moto's server), the queue's messages as an SQS event through the
processor into PostgreSQL. Then the listings, the byte-identical rebuild and the errors.

Building downloads wheels through pip's configured index (or its cache); nothing else
leaves the loopback interface."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.plugins.sqs import REGION, _free_port
from wahook.deploy import package
from wahook.deploy.package import (
    PROCESSOR,
    RECEIVER,
    Built,
    Entry,
    IndexUnreachable,
    PackageError,
    Target,
)
from wahook.parse import sign
from wahook.receiver import samples
from wahook.sinks.postgres import add_organization

ORG_SECRET = "org-secret-for-package-test"
DEPLOYMENT_SECRET = "deployment-secret-for-package-test"
TOKEN = "package-test-token"
MACHINE = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

# What a Lambda runtime does, minus the runtime API: import the handler, call it with
# each event and a context, print the results; then list every module loaded from
# anywhere but the given directories and the standard library.
CHILD = r"""
import importlib, json, sys, sysconfig
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["paths"]
class Context:
    aws_request_id = "req-1"
    def get_remaining_time_in_millis(self):
        return 60000
module, _, name = spec["handler"].rpartition(".")
handler = getattr(importlib.import_module(module), name)
for extra in spec.get("import", []):
    importlib.import_module(extra)
results = [handler(event, Context()) for event in spec["events"]]
roots = [*spec["paths"], sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]]
outside = sorted(
    f"{n}: {m.__file__}" for n, m in list(sys.modules.items())
    if getattr(m, "__file__", None) and not any(m.__file__.startswith(r) for r in roots)
)
top = sorted({n.split(".")[0] for n in sys.modules})
print(json.dumps({"results": results, "outside": outside, "modules": top}))
"""


def this_target() -> Target:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python not in package.RUNTIME_GLIBC or platform.machine() not in MACHINE:
        pytest.skip(f"no Lambda runtime for python{python} on {platform.machine()}")
    return Target(python, MACHINE[platform.machine()])


def standin_template(path: Path) -> Path:
    """Only while this branch has no src/wahook/deploy/template.yaml: a stand-in that
    names the two zips as the real one does, to check the copy."""
    path.write_text(
        "Resources:\n"
        "  Receiver:\n    Properties:\n      CodeUri: receiver.zip\n"
        "  Processor:\n    Properties:\n      CodeUri: processor.zip\n"
    )
    return path


@dataclasses.dataclass
class Packages:
    target: Target
    out: Path
    again: Path
    built: list[Built]
    template: bytes
    progress: list[str]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    target = this_target()
    template = package.installed_template() or standin_template(
        tmp_path_factory.mktemp("standin") / "template.yaml"
    )
    progress: list[str] = []
    out = tmp_path_factory.mktemp("first") / "lambda"
    built = package.build(out, target, template=template, say=progress.append)
    again = tmp_path_factory.mktemp("second") / "elsewhere"
    package.build(again, target, template=template, say=lambda line: None)
    return Packages(target, out, again, built, template.read_bytes(), progress)


def unpack(zip_path: Path, into: Path) -> Path:
    into.mkdir()
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(into)
    return into


@pytest.fixture(scope="module")
def runtime_botocore(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """botocore and its dependencies from their wheels, where the Lambda runtime has them."""
    wheels = package.fetch_wheels(
        package.pins(["botocore"]),
        packages.target,
        tmp_path_factory.mktemp("botocore-wheels"),
        constraints=package.installed_constraints(),
    )
    root = tmp_path_factory.mktemp("var-runtime")
    for wheel in wheels:
        for name, entry in package.wheel_entries(wheel).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(entry.data)
    return root


def run_handler(
    handler: str, paths: list[Path], events: list[Any], env: dict[str, str], **extra: Any
) -> dict[str, Any]:
    spec = {"paths": [str(p) for p in paths], "handler": handler, "events": events, **extra}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outside"] == [], "loaded from outside the package and stdlib"
    return {**result, "stderr": done.stderr}


def lambda_env(tmp: Path, **more: str) -> dict[str, str]:
    """A Lambda-like environment: fake credentials, no instance metadata, no AWS config."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "HOME": str(tmp),
        **more,
    }


def api_gateway_v2(method: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
    query = f"hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=1158201444"
    return {
        "version": "2.0",
        "routeKey": f"{method} /webhook",
        "rawPath": "/webhook",
        "rawQueryString": query if method == "GET" else "",
        "headers": {"content-type": "application/json", **headers},
        "requestContext": {"http": {"method": method, "path": "/webhook"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def as_lambda_records(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Messages from ReceiveMessage as the SQS event source mapping delivers them."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    k: {"stringValue": v["StringValue"], "dataType": v["DataType"]}
                    for k, v in m.get("MessageAttributes", {}).items()
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


async def _organization(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await add_organization(
            conn, name="Packaged", phone_number_id=samples.PHONE_NUMBER_ID,
            waba_id=samples.WABA_ID, app_secret=ORG_SECRET,
        )  # fmt: skip
    finally:
        await conn.close()


async def _rows(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "incoming": await conn.fetch(
                "SELECT organization_id, whatsapp_message_id FROM incoming_messages ORDER BY 2"
            ),
            "events": await conn.fetchval("SELECT count(*) FROM webhook_events"),
            "quarantined": await conn.fetchval("SELECT count(*) FROM quarantine"),
        }
    finally:
        await conn.close()


@dataclasses.dataclass
class Stage:
    """A fresh queue on moto's server and a fresh database with one organization."""

    endpoint: str
    client: Any
    queue_url: str
    dsn: str
    org_id: int
    tmp: Path

    def receiver_env(self) -> dict[str, str]:
        return lambda_env(
            self.tmp, WAHOOK_QUEUE_URL=self.queue_url, WAHOOK_AWS_ENDPOINT_URL=self.endpoint,
            WAHOOK_DSN=self.dsn, WEBHOOK_VERIFY_TOKEN=TOKEN, WEBHOOK_SECRET=DEPLOYMENT_SECRET,
        )  # fmt: skip

    def received(self, **options: Any) -> list[dict[str, Any]]:
        got = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, **options
        )
        return list(got.get("Messages", []))


@pytest.fixture
def stage(sqs_endpoint: str, sqs_queue: Any, sqs_client: Any, db_dsn: str, tmp_path: Path) -> Stage:
    org_id = asyncio.run(_organization(db_dsn))
    return Stage(sqs_endpoint, sqs_client, sqs_queue(), db_dsn, org_id, tmp_path)


@pytest.mark.slow
def test_packaged_handlers_carry_a_webhook_from_api_gateway_to_postgres(
    packages: Packages, runtime_botocore: Path, stage: Stage, tmp_path: Path
) -> None:
    receiver = unpack(packages.out / "receiver.zip", tmp_path / "receiver")
    processor = unpack(packages.out / "processor.zip", tmp_path / "processor")
    body = samples.sample(messages=3, statuses=1)

    # Signed with the organization's secret, which only the database knows: the receiver
    # must load it with the asyncpg it carries.
    events = [
        api_gateway_v2("GET"),
        api_gateway_v2("POST", body, **{"x-hub-signature-256": sign(body, ORG_SECRET)}),
        api_gateway_v2("POST", body, **{"x-hub-signature-256": sign(body, "not-a-secret")}),
    ]
    env = stage.receiver_env()
    got = run_handler(RECEIVER.handlers[0], [receiver, runtime_botocore], events, env)
    statuses = [r["statusCode"] for r in got["results"]]
    assert statuses == [200, 200, 403], got["results"]
    assert got["results"][0]["body"] == "1158201444"
    assert {"asyncpg", "botocore", "msgspec"} <= set(got["modules"])
    assert not {"aiohttp", "aiobotocore", "structlog"} & set(got["modules"])

    messages = stage.received(AttributeNames=["All"], MessageAttributeNames=["All"])
    assert [m["Body"].encode() for m in messages] == [body]
    arn = stage.client.get_queue_attributes(QueueUrl=stage.queue_url, AttributeNames=["QueueArn"])
    event = as_lambda_records(messages, arn["Attributes"]["QueueArn"])

    # The processor gets no botocore: it must not need one.
    handlers = [h.rpartition(".")[0] for h in PROCESSOR.handlers[1:]]
    present = [m for m in handlers if module_file(m) in zip_names(packages.out / "processor.zip")]
    env = lambda_env(tmp_path, WAHOOK_DSN=stage.dsn, AWS_LAMBDA_FUNCTION_NAME="wahook-processor")
    got = run_handler(PROCESSOR.handlers[0], [processor], [event], env, **{"import": present})
    assert got["results"] == [{"batchItemFailures": []}]
    assert "botocore" not in got["modules"]

    rows = asyncio.run(_rows(stage.dsn))
    wamids = [r["whatsapp_message_id"] for r in rows["incoming"]]
    assert wamids == sorted(m["id"] for m in (samples.text_message(i) for i in range(3)))
    assert {r["organization_id"] for r in rows["incoming"]} == {stage.org_id}
    assert (rows["events"], rows["quarantined"]) == (4, 0)


def module_file(module: str) -> str:
    return module.replace(".", "/") + ".py"


def zip_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return set(zf.namelist())


@pytest.mark.slow
def test_listings_hold_what_each_handler_imports_and_nothing_else(packages: Packages) -> None:
    receiver = zip_names(packages.out / "receiver.zip")
    processor = zip_names(packages.out / "processor.zip")
    tag = sys.implementation.cache_tag.removeprefix("cpython-")
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[packages.target.arch]
    native = f"msgspec/_core.cpython-{tag}-{machine}-linux-gnu.so"
    for names in (receiver, processor):
        assert native in names
        assert any(n.startswith("asyncpg/protocol/protocol.cpython-") for n in names)
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
        assert not [n for n in names if n.split("/")[0] in ("aiohttp", "aiobotocore", "botocore")]
        own = {n for n, _ in package._walk(package._package_root(), "wahook")}
        assert own <= names
        assert RECEIVER.handlers[0].rpartition(".")[0].replace(".", "/") + ".py" in names
    assert not [n for n in receiver if n.startswith(("structlog/", "structlog-"))]
    assert "structlog/__init__.py" in processor
    assert "wahook/runtime/lambda_sqs.py" in processor


@pytest.mark.slow
def test_two_builds_are_byte_identical_with_fixed_stamps_and_no_build_paths(
    packages: Packages,
) -> None:
    for name in ("receiver.zip", "processor.zip", "template.yaml"):
        assert (packages.out / name).read_bytes() == (packages.again / name).read_bytes(), name
    assert (packages.out / "template.yaml").read_bytes() == packages.template
    leaks = [str(package._package_root()).encode(), str(packages.out).encode(), b"/tmp/"]
    for built in packages.built:
        with zipfile.ZipFile(built.path) as zf:
            infos = zf.infolist()
            assert [i.filename for i in infos] == sorted(i.filename for i in infos)
            assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
            assert {i.external_attr >> 16 for i in infos} <= {0o100644, 0o100755}
            for info in infos:
                data = zf.read(info)
                assert not [leak for leak in leaks if leak in data], info.filename
        assert built.size == built.path.stat().st_size
        assert built.files == len(infos)


@pytest.mark.slow
def test_progress_says_each_step_and_the_sizes(packages: Packages) -> None:
    steps = [line.split(" ", 1)[0] for line in packages.progress]
    assert steps == [f"[{i}/6]" for i in range(1, 7)]
    for built in packages.built:
        line = next(p for p in packages.progress if p.split(" ")[1] == f"{built.path}:")
        assert f"{built.size / 1024 / 1024:.1f} MB zipped" in line


@pytest.mark.slow
def test_receiver_without_asyncpg_keeps_the_deployment_secret_only(
    packages: Packages,
    runtime_botocore: Path,
    stage: Stage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--no-receiver-asyncpg with WAHOOK_DSN set anyway: the organizations cannot be
    loaded (said in a warning), bodies signed with the deployment-wide secret still go
    through, bodies signed only with an organization's are refused. Also: the zips take
    SOURCE_DATE_EPOCH as their timestamp."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    built = package.build(
        tmp_path / "out", packages.target, receiver_asyncpg=False, template=None,
        say=lambda _: None,
    )  # fmt: skip
    names = zip_names(built[0].path)
    assert not [n for n in names if n.startswith("asyncpg")]
    assert "msgspec/__init__.py" in names
    with zipfile.ZipFile(built[1].path) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}

    receiver = unpack(built[0].path, tmp_path / "receiver")
    body = samples.sample(messages=1, statuses=0)
    events = [
        api_gateway_v2("POST", body, **{"x-hub-signature-256": sign(body, DEPLOYMENT_SECRET)}),
        api_gateway_v2("POST", body, **{"x-hub-signature-256": sign(body, ORG_SECRET)}),
    ]
    got = run_handler(
        RECEIVER.handlers[0], [receiver, runtime_botocore], events, stage.receiver_env()
    )
    assert [r["statusCode"] for r in got["results"]] == [200, 403]
    assert "organization_credentials_unavailable error=ModuleNotFoundError" in got["stderr"]
    assert "asyncpg" not in got["modules"]
    assert [m["Body"].encode() for m in stage.received()] == [body]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wahook.cli", "package", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def offline_pip() -> dict[str, str]:
    """pip pointed at a loopback port where nothing listens, its configuration ignored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{_free_port()}/simple",
        "PIP_RETRIES": "1",  # pip says why it failed only when it retries
        "PIP_NO_CACHE_DIR": "1",
    }
    return env


def test_cli_unreachable_index_is_one_line_and_exit_3(
    offline_pip: dict[str, str], tmp_path: Path
) -> None:
    done = cli("-o", str(tmp_path / "out"), env=offline_pip)
    assert done.returncode == IndexUnreachable.exit_code == 3
    assert done.stderr.startswith(
        f"wahook: cannot reach the package index ({offline_pip['PIP_INDEX_URL']}): "
    )
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list((tmp_path / "out").glob("*.zip"))


def test_cli_unknown_architecture_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("-o", str(tmp_path), "--arch", "sparc")
    assert done.returncode == 2
    assert "invalid choice: 'sparc'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_help_names_the_examples() -> None:
    done = cli("--help")
    assert done.returncode == 0
    assert "wahook package -o build/lambda --python 3.13 --arch arm64" in done.stdout
    assert "sam deploy --guided --template-file build/lambda/template.yaml" in done.stdout


def test_targets_and_pip_failures_read_as_one_line() -> None:
    with pytest.raises(PackageError, match=r"unknown Lambda architecture 'sparc'"):
        Target("3.12", "sparc")
    with pytest.raises(PackageError, match=r"no Lambda runtime python3\.10"):
        Target("3.10", "x86_64")
    assert Target("3.11", "arm64").platforms()[-1] == "manylinux2014_aarch64"
    assert Target("3.11", "x86_64").platforms()[0] == "manylinux_2_26_x86_64"
    assert Target("3.13", "x86_64").platforms()[0] == "manylinux_2_34_x86_64"
    missing = package._pip_failure(
        "ERROR: Could not find a version that satisfies the requirement asyncpg==0.32.0 "
        "(from versions: 0.29.0)\nERROR: No matching distribution found for asyncpg==0.32.0\n",
        Target("3.12", "arm64"),
    )
    assert type(missing) is PackageError
    assert str(missing).startswith("no asyncpg==0.32.0 wheel for python3.12 arm64")
    conflict = package._pip_failure(
        "ERROR: Cannot install a==1 and b==2 because these package versions have conflicting"
        " dependencies.\n\nThe conflict is caused by: ...\nERROR: ResolutionImpossible: for"
        " help visit https://pip.pypa.io/...\n",
        Target("3.12", "arm64"),
    )
    assert str(conflict) == (
        "pip download failed: ERROR: Cannot install a==1 and b==2 because these package"
        " versions have conflicting dependencies."
    )
    other = package._pip_failure("WARNING: x\nno error line\n", Target("3.12", "arm64"))
    assert str(other) == "pip download failed: no error line"
    assert package._RELEASE.fullmatch("2.9.0.post0")
    assert not package._RELEASE.fullmatch("2.5.1+cpu")


def test_two_wheels_disagreeing_about_a_file_is_an_error(tmp_path: Path) -> None:
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("wahook/__init__.py", b"# not wahook\n")
    with pytest.raises(PackageError, match=r"wahook/__init__.py comes from both wahook and other"):
        package.assemble(RECEIVER, {"wahook/__init__.py": Entry(b"'''wahook'''\n")}, [wheel])


def test_missing_template_is_said_not_written(tmp_path: Path) -> None:
    line = package._copy_template(None, tmp_path, Target("3.12", "x86_64"))
    assert line == "template.yaml: not in this wahook installation, not written"
    assert not (tmp_path / "template.yaml").exists()
    other = tmp_path / "src.yaml"
    other.write_text("Runtime: python3.13\n")
    assert "WARNING: it names python3.13" in package._copy_template(
        other, tmp_path, Target("3.12", "x86_64")
    )
