"""No test reaches past this machine: an audit hook on ``socket.connect``, and AWS
credentials that could not work anywhere real.

Every connection of the test process to an address that is not loopback (or a Unix
socket) is refused with ``NetworkGuardError`` and recorded; a test during which one was
attempted fails, even when the code under test caught the error (botocore and asyncpg
retry or wrap what they catch). Host names are refused too (anything but ``localhost``),
since a name would be resolved to who knows where. Subprocesses a test starts (moto's
server, ``wahook worker``) are not covered by the hook; they get the same fake AWS
environment, and take their endpoints from the tests.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # botocore must not ask an instance metadata service for credentials or a region,
    # nor read a developer's real profile.
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "WAHOOK_AWS_ENDPOINT_URL")


class NetworkGuardError(RuntimeError):
    """A test tried to connect to a non-loopback address. Not an ``OSError``, so code that
    retries connection errors does not mistake it for a network blip."""


_attempts: list[str] = []


def is_local(address: Any) -> bool:
    """True for a loopback (host, port, ...) tuple; Unix socket paths are local too."""
    if not isinstance(address, tuple):
        return True
    host = str(address[0]).split("%", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect":
        return
    sock, address = args[0], args[1]
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    if not is_local(address):
        _attempts.append(repr(address))
        raise NetworkGuardError(f"test tried to connect to non-loopback address {address!r}")


def pytest_configure(config: pytest.Config) -> None:
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS)
    if not getattr(sys, "_wahook_network_guard", False):  # audit hooks cannot be removed
        sys.addaudithook(_guard)
        sys._wahook_network_guard = True  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_remote_connections() -> Iterator[None]:
    start = len(_attempts)
    yield
    tried = _attempts[start:]
    if tried:
        pytest.fail(f"connections to non-loopback addresses attempted: {', '.join(tried)}")
