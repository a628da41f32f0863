"""AWS clients for the ops commands, made by the same endpoint rule as ``serve`` and
``worker`` (``wahook.settings.aws_endpoint_url``), and AWS errors as one line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from wahook.settings import Settings, aws_client_args, aws_endpoint_url


@contextlib.asynccontextmanager
async def client(
    settings: Settings, service: str, queue_url: str | None = None
) -> AsyncIterator[Any]:
    """An aiobotocore client for ``service`` (sqs, cloudwatch, logs). A non-AWS
    ``queue_url`` names the endpoint of every service when no endpoint is configured:
    moto and LocalStack serve them all on one port."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    endpoint = aws_endpoint_url(settings.aws_endpoint_url, queue_url or settings.queue_url)
    config = AioConfig(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )
    async with get_session().create_client(
        service, **aws_client_args(settings.aws_region, endpoint), config=config
    ) as c:
        yield c


def is_aws_error(exc: BaseException) -> bool:
    """True for what botocore raises when a call fails (service error, endpoint, creds)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)


def describe(exc: BaseException) -> str:
    """One line for an AWS failure, with the code AWS gave when there is one."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    return str(exc) or type(exc).__name__


def queue_name(queue_url: str) -> str:
    """``.../123456789012/wahook`` -> ``wahook`` (CloudWatch's ``QueueName`` dimension)."""
    return queue_url.rstrip("/").rpartition("/")[2]
