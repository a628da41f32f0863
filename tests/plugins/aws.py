"""AWS services other than SQS through the same moto server (it serves every service on
one port): ``aws_client("secretsmanager")`` and friends, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest

from tests.plugins.sqs import REGION


@pytest.fixture
def aws_client(sqs_endpoint: str) -> Iterator[Callable[[str], Any]]:
    """A factory of synchronous botocore clients on moto's server, closed after the test."""
    made: list[Any] = []

    def make(service: str) -> Any:
        client = botocore.session.get_session().create_client(
            service, region_name=REGION, endpoint_url=sqs_endpoint
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
