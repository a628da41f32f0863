"""``WAHOOK_LOG_LEVEL=debug`` on a real ``wahook worker`` against moto's SQS: botocore's
lines join the JSON stream with their messages, and no credential or signature is in it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.test_pipeline_postgres import add_tenant
from tests.integration.test_worker_subprocess import worker
from tests.plugins.sqs import send_bodies
from wahook.testing import webhook_traffic

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION = "FwoGZXIvYXdzEJr//////////wEaDEXAMPLESESSIONTOKEN"


async def test_debug_logs_of_a_worker_carry_no_aws_secret(
    db_dsn: str, pool: Any, sqs_endpoint: str, sqs_queue: Callable[..., str], sqs_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await add_tenant(pool)
    url = sqs_queue()
    send_bodies(sqs_client, url, list(webhook_traffic(3)))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    async with worker(url, sqs_endpoint, db_dsn, "--log-level", "debug") as w:
        await w.wait_for_event("batch_committed")
        assert await w.stop() == 0
    text = "".join(w.lines)
    libraries = [e for e in w.events if not str(e.get("logger", "wahook")).startswith("wahook")]
    assert any(str(e["event"]).startswith("Sending http request") for e in libraries), text[:3000]
    for secret in (KEY_ID, SECRET_KEY, SESSION):
        assert secret not in text
    assert not re.search(r"Signature=[0-9a-f]{16}", text)
    assert all(json.loads(line) for line in w.lines)  # every line is one JSON event
