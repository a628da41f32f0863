"""The test suite's network guard (tests/plugins/network.py) refuses what it should."""

from __future__ import annotations

import os
import socket

import pytest

from tests.plugins import network


@pytest.mark.parametrize(
    ("address", "local"),
    [
        (("127.0.0.1", 5432), True),
        (("127.8.9.10", 80), True),
        (("::1", 443, 0, 0), True),
        (("localhost", 80), True),
        ("/var/run/postgresql/.s.PGSQL.5432", True),
        (("192.0.2.1", 443), False),
        (("10.0.0.5", 5432), False),
        (("2001:db8::1", 443, 0, 0), False),
        (("sqs.us-east-1.amazonaws.com", 443), False),
        (("169.254.169.254", 80), False),  # the instance metadata service
    ],
)
def test_what_counts_as_local(address: object, local: bool) -> None:
    assert network.is_local(address) is local


def test_a_remote_connect_is_refused_and_recorded() -> None:
    before = len(network._attempts)
    with socket.socket() as s, pytest.raises(network.NetworkGuardError, match=r"192\.0\.2\.1"):
        s.connect(("192.0.2.1", 9))
    assert network._attempts[before:] == [repr(("192.0.2.1", 9))]
    del network._attempts[before:]  # this test's own attempt must not fail it


def test_a_loopback_connect_passes_the_guard() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass


def test_aws_environment_is_fake() -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert "AWS_PROFILE" not in os.environ
