"""What an operator can get wrong is one line on stderr and an exit status, never a
traceback: the real `wahook` CLI, run as a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WAHOOK = str(Path(sys.executable).with_name("wahook"))


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("WAHOOK_", "DB_", "WEBHOOK_", "SQS_", "AWS_"))}  # fmt: skip
    return subprocess.run(
        [WAHOOK, *args], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def one_line(out: subprocess.CompletedProcess[str], prefix: str) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_post_of_a_missing_file(tmp_path: Path) -> None:
    out = run(tmp_path, "post", str(tmp_path / "nope.json"), WEBHOOK_SECRET="s")
    line = one_line(out, "wahook post: ")
    assert "nope.json: No such file or directory" in line
    assert out.returncode == 1


def test_post_to_something_that_is_not_a_url(tmp_path: Path) -> None:
    out = run(tmp_path, "post", "--sample", "--url", "127.0.0.1:8080", WEBHOOK_SECRET="s")
    assert "--url must be an http:// or https:// URL" in one_line(out, "wahook post: ")
    assert out.returncode == 2


def test_serve_on_a_database_that_does_not_exist(tmp_path: Path, pg_dsn: str) -> None:
    missing = pg_dsn.rsplit("/", 1)[0] + "/wahook_does_not_exist"
    out = run(tmp_path, "serve", "--port", str(free_port()), "--dsn", missing)
    line = one_line(out, "wahook serve: ")
    assert 'database "wahook_does_not_exist" does not exist' in line
    assert out.returncode == 1


BAD_SETTINGS = [
    ("WAHOOK_METRICS_PORT", "abc", "a whole number from 0 to 65535"),
    ("WAHOOK_PORT", "70000", "a whole number from 0 to 65535"),
    ("WAHOOK_BATCH_SIZE", "0", "a whole number from 1 up"),
    ("WAHOOK_GRACE_SECONDS", "-1", "a number of seconds, 0 or more"),
    ("WAHOOK_BATCH_MAX_AGE", "nan", "a number of seconds, 0 or more"),
    ("WAHOOK_PROGRESS_SECONDS", "0", "a number of seconds above 0"),
    ("WAHOOK_LOG_LEVEL", "verbose", "one of debug, info, warning, error, critical"),
    ("WAHOOK_LOG_FORMAT", "xml", "one of json, console"),
    ("DB_PORT", "fivefourthreetwo", "a whole number from 0 to 65535"),
]
COMMANDS = {
    "stats": ["stats"],
    "serve": ["serve", "--port", "0"],
    "worker": ["worker"],
    "replay": ["replay", "x.jsonl", "--dry-run", "--any-organization"],
    "migrate": ["migrate"],
    "post": ["post", "--sample"],
}


def bad_setting(tmp_path: Path, command: str, variable: str, value: str, form: str) -> None:
    env = {variable: value}
    if variable == "DB_PORT":
        env["DB_HOST"] = "127.0.0.1"
    out = run(tmp_path, *COMMANDS[command], **env)
    line = one_line(out, f"wahook {command}: ")
    assert line == f"wahook {command}: {variable} must be {form}, got {value!r}"
    assert out.returncode == 2


@pytest.mark.parametrize(("variable", "value", "form"), BAD_SETTINGS)
def test_a_bad_setting_names_the_variable_and_its_form(
    tmp_path: Path, variable: str, value: str, form: str
) -> None:
    bad_setting(tmp_path, "stats", variable, value, form)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reads_its_settings_the_same_way(tmp_path: Path, command: str) -> None:
    bad_setting(tmp_path, command, *BAD_SETTINGS[0])


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "70000"],
        ["worker", "--metrics-port", "-1"],
        ["replay", "--batch-size", "0", "x.jsonl", "--any-organization"],
        ["replay", "--batch-max-age", "x", "x.jsonl", "--any-organization"],
        ["worker", "--log-level", "verbose"],
    ],
)
def test_a_bad_flag_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    out = run(tmp_path, *args)
    assert "Traceback" not in out.stderr
    assert f"wahook {args[0]}: error: argument {args[1]}" in out.stderr
    assert out.returncode == 2


@pytest.mark.parametrize(
    "args",
    [
        ["stats", "--dsn", "not-a-dsn"],
        ["migrate", "--dsn", "postgresql://postgres@127.0.0.1:9/x"],
        ["org", "list", "--dsn", "postgresql://postgres@127.0.0.1:9/x"],
    ],
)
def test_database_commands_say_why_in_one_line(tmp_path: Path, args: list[str]) -> None:
    out = run(tmp_path, *args)
    one_line(out, f"wahook {' '.join(a for a in args[:2] if not a.startswith('-'))}: ")
    assert out.returncode == 1


def test_a_missing_setting_is_exit_2(tmp_path: Path) -> None:
    out = run(tmp_path, "worker")
    assert "no queue" in one_line(out, "wahook worker: ")
    assert out.returncode == 2


def test_replay_of_the_wrong_input_kind_says_so_and_stores_nothing(
    tmp_path: Path, pg_dsn: str
) -> None:
    from wahook.testing import webhook_traffic

    bodies = list(webhook_traffic(4))
    (tmp_path / "dump.jsonl.gz").write_bytes(gzip.compress(b"\n".join(bodies)))
    (tmp_path / "export.json").write_bytes(b"[" + b",\n".join(bodies) + b"]")
    out = run(tmp_path, "replay", "--dry-run", "--any-organization", "dump.jsonl.gz", "export.json")
    assert out.returncode == 0, out.stderr
    assert "replay: 8 bodies" in out.stdout
    assert "0 undecodable bodies" in out.stdout

    pretty = b"\n".join(json.dumps(json.loads(b), indent=2).encode() for b in bodies)
    (tmp_path / "pretty.jsonl").write_bytes(pretty)
    missing = pg_dsn.rsplit("/", 1)[0] + "/wahook_does_not_exist"  # never reached
    out = run(
        tmp_path, "replay", "--any-organization", "dump.jsonl.gz", "pretty.jsonl", "--dsn", missing
    )
    line = one_line(out, "wahook replay: pretty.jsonl: pretty-printed JSON")
    assert "jq -c" in line
    assert out.returncode == 2
    assert out.stdout == ""

    out = subprocess.run(
        [WAHOOK, "replay", "--dry-run", "--any-organization", "-"],
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert out.stderr.decode() == "wahook replay: stdin: no webhook body to replay\n"
    assert out.returncode == 2
