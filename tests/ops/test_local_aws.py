"""The help examples and `wahook dev aws`, as written: a non-AWS queue URL is its own
endpoint, so `serve` and `worker` reach moto on 127.0.0.1 with no endpoint flag and no
AWS credentials in the environment."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import (
    APP_SECRET,
    VERIFY_TOKEN,
    WAHOOK,
    background,
    cli_env,
    free_port,
    read_until,
    run,
)
from wahook.receiver import samples

HELP_QUEUE = "http://127.0.0.1:5000/123456789012/wahook"


def help_example(command: str, needle: str) -> list[str]:
    """The line of ``wahook COMMAND --help`` (or ``wahook --help``) that contains ``needle``."""
    argv = [WAHOOK, command, "--help"] if command else [WAHOOK, "--help"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    [line] = [line for line in text.splitlines() if needle in line]
    return shlex.split(line.split("#", 1)[0])


async def wait_for(pool: Any, sql: str, expected: int, wait: float = 60.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (n := await pool.fetchval(sql)) != expected and loop.time() < deadline:  # noqa: ASYNC110  # polls another process's writes
        await asyncio.sleep(0.2)
    return int(n)


@pytest.mark.slow
async def test_dev_aws_then_the_help_examples_store_rows(db_dsn: str, pool: Any) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="wahook-dev-aws-"))
    env = cli_env(aws=False)
    port = free_port()
    dev = [WAHOOK, "dev", "aws", "--port", str(port)]
    with background(dev, cli_env(aws=False, WAHOOK_DSN=db_dsn)) as moto:
        banner = read_until(moto, "stop with Ctrl-C", timeout=60)
        queue = f"http://127.0.0.1:{port}/123456789012/wahook"
        assert f"queue:              {queue}" in banner
        assert f"127.0.0.1:{port}/123456789012/wahook-dlq  (after 5 receives)" in banner
        printed = {
            line.split()[1]: line.strip()
            for line in banner.splitlines()
            if line.strip().startswith("wahook ")
        }
        assert printed["serve"] == f"wahook serve --queue-url {queue}"
        assert "postgresql://" in printed["worker"]  # its DSN: WAHOOK_DSN (masked if secret)

        # `wahook serve --help`'s example, as written but for moto's port.
        serve = help_example("serve", f"--queue-url {HELP_QUEUE}")
        assert serve == ["wahook", "serve", "--queue-url", HELP_QUEUE]
        serve = [WAHOOK, *serve[1:]]
        serve[serve.index(HELP_QUEUE)] = queue
        worker = [WAHOOK, *shlex.split(printed["worker"])[1:]]
        assert help_example("", "wahook worker")[1:3] == ["worker", "--queue-url"]

        http_port = free_port()
        secrets = {"WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN, "WEBHOOK_SECRET": APP_SECRET}
        with background(
            [*serve, "--port", str(http_port)], {**env, **secrets}, cwd=workdir
        ) as server:
            read_until(server, "  stop with")
            url = f"http://127.0.0.1:{http_port}/webhook"
            post = run(
                "post",
                "--sample",
                "--messages",
                "3",
                "--statuses",
                "2",
                "--url",
                url,
                env={**env, **secrets},
            )
            assert post.returncode == 0, post.stderr
            assert post.stdout.startswith("200 EVENT_RECEIVED")

            await pool.execute(
                "INSERT INTO organizations (name, whatsapp_business_account_id, "
                "whatsapp_phone_number_id) VALUES ('Acme', $1, $2)",
                samples.WABA_ID,
                samples.PHONE_NUMBER_ID,
            )
            with background(worker, env, stop=signal.SIGTERM) as proc:
                stored = await wait_for(pool, "SELECT count(*) FROM incoming_messages", 3)
                assert proc.poll() is None
            assert stored == 3
            assert await pool.fetchval("SELECT count(*) FROM webhook_events") == 5

            status = run("queue", "status", "--queue-url", queue, "--json", env=env)
            assert status.returncode == 0, status.stderr
            assert '"visible": 0' in status.stdout
        moto.send_signal(signal.SIGINT)
        assert moto.wait(timeout=30) == 0


async def test_explicit_endpoint_wins_over_an_aws_queue_url(
    sqs_endpoint: str, sqs_client: Any, sqs_queue: Any
) -> None:
    """An AWS-host queue URL keeps botocore's regional endpoint unless one is given: the flag
    (or WAHOOK_AWS_ENDPOINT_URL, then AWS_ENDPOINT_URL) sends it to moto instead."""
    name = sqs_queue().rsplit("/", 1)[1]
    aws_url = f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="wahook-endpoint-"))
    secrets = {"WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN, "WEBHOOK_SECRET": APP_SECRET}
    for flag, extra in (
        (["--endpoint-url", sqs_endpoint], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}),
        ([], {"WAHOOK_AWS_ENDPOINT_URL": sqs_endpoint, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}),
        ([], {"AWS_ENDPOINT_URL": sqs_endpoint}),
    ):
        env = {**cli_env(), **secrets, **extra}
        port = free_port()
        argv = [WAHOOK, "serve", "--queue-url", aws_url, "--port", str(port), *flag]
        with background(argv, env, cwd=workdir) as server:
            read_until(server, "  stop with")
            url = f"http://127.0.0.1:{port}/webhook"
            post = run("post", "--sample", "--url", url, env=env)
            assert post.stdout.startswith("200 EVENT_RECEIVED"), (extra, post.stdout)
    attrs = sqs_client.get_queue_attributes(
        QueueUrl=f"{sqs_endpoint}/123456789012/{name}",
        AttributeNames=["ApproximateNumberOfMessages"],
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "3"


def test_dev_aws_stops_on_ctrl_c_even_started_in_the_background() -> None:
    """A shell starts background jobs with SIGINT ignored; `dev aws` still stops on it."""
    port = free_port()
    proc = subprocess.Popen(
        [WAHOOK, "dev", "aws", "--port", str(port)],
        env=cli_env(aws=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        read_until(proc, "stop with Ctrl-C", timeout=60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_dev_aws_refuses_a_non_loopback_address() -> None:
    out = run("dev", "aws", "--host", "0.0.0.0", env=cli_env(aws=False))
    assert out.returncode == 2
    assert "not a loopback address" in out.stderr
