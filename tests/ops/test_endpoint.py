"""The one rule for the endpoint of every AWS client (unit: no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wahook.settings import Settings, aws_client_args, aws_endpoint_url, is_loopback_url

LOCAL = "http://127.0.0.1:5000/123456789012/wahook"


@pytest.mark.parametrize(
    ("configured", "queue_url", "expected"),
    [
        (None, LOCAL, "http://127.0.0.1:5000"),
        (None, "http://localhost:4566/000000000000/q", "http://localhost:4566"),
        (
            None,
            "https://user:pw@sqs.internal.example:8443/1/q",
            "https://sqs.internal.example:8443",
        ),
        (None, "https://sqs.eu-west-1.amazonaws.com/123456789012/wahook", None),
        (None, "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/wahook", None),
        (None, "https://sqs.us-east-1.api.aws/123456789012/wahook", None),
        (None, "https://SQS.US-EAST-1.AMAZONAWS.COM./1/q", None),
        (None, "https://vpce-1.sqs.us-east-1.vpce.amazonaws.com/1/q", None),
        (None, None, None),
        (None, "wahook", None),  # not a URL: botocore decides
        ("http://127.0.0.1:9999", LOCAL, "http://127.0.0.1:9999"),
        (
            "http://127.0.0.1:9999",
            "https://sqs.eu-west-1.amazonaws.com/1/q",
            "http://127.0.0.1:9999",
        ),
    ],
)
def test_endpoint_rule(configured: str | None, queue_url: str | None, expected: str | None) -> None:
    assert aws_endpoint_url(configured, queue_url) == expected


def test_a_host_that_only_looks_like_aws_is_its_own_endpoint() -> None:
    assert aws_endpoint_url(None, "http://amazonaws.com.evil.test/1/q") == (
        "http://amazonaws.com.evil.test"
    )
    assert aws_endpoint_url(None, "http://notamazonaws.com/1/q") == "http://notamazonaws.com"


def test_flag_beats_wahook_variable_beats_aws_variable() -> None:
    env = {
        "WAHOOK_AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:2",
    }
    assert Settings.from_env(env).aws_endpoint_url == "http://127.0.0.1:1"
    assert Settings.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:2"}).aws_endpoint_url == (
        "http://127.0.0.1:2"
    )
    flagged = Settings.from_env(env).replace(aws_endpoint_url="http://127.0.0.1:3")
    assert aws_endpoint_url(flagged.aws_endpoint_url, LOCAL) == "http://127.0.0.1:3"


@given(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.sampled_from([".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]),
)
def test_every_aws_host_keeps_botocore_endpoint(label: str, suffix: str) -> None:
    assert aws_endpoint_url(None, f"https://{label}{suffix}/123/q") is None


def test_placeholder_credentials_only_for_loopback_without_credentials() -> None:
    local = aws_client_args("us-east-1", "http://127.0.0.1:5000", env={})
    assert local["aws_access_key_id"] == "local"
    assert "aws_access_key_id" not in aws_client_args(
        "us-east-1", "http://127.0.0.1:5000", env={"AWS_ACCESS_KEY_ID": "x"}
    )
    assert "aws_access_key_id" not in aws_client_args(
        "us-east-1", "http://127.0.0.1:5000", env={"AWS_PROFILE": "dev"}
    )
    assert "aws_access_key_id" not in aws_client_args("eu-west-1", None, env={})
    assert "aws_access_key_id" not in aws_client_args("eu-west-1", "http://10.0.0.5:4566", env={})
    assert is_loopback_url("http://[::1]:5000")
    assert is_loopback_url("http://localhost")
    assert not is_loopback_url("http://169.254.169.254")
