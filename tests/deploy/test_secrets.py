"""Secrets read at a Lambda's cold start, from moto's Secrets Manager and SSM (server mode,
over the wire, on 127.0.0.1)."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest

from wahook.deploy.secrets import load_secrets
from wahook.errors import ConfigError
from wahook.settings import Settings

_names = itertools.count()


def name(kind: str) -> str:
    return f"/wahook-test/{os.getpid()}/{kind}-{next(_names)}"


@pytest.fixture
def secret(aws_client: Callable[[str], Any]) -> Callable[[str], str]:
    """``secret(value)`` -> the ARN of a new Secrets Manager secret."""
    client = aws_client("secretsmanager")
    return lambda value: str(
        client.create_secret(Name=name("s").lstrip("/"), SecretString=value)["ARN"]
    )


@pytest.fixture
def parameter(aws_client: Callable[[str], Any]) -> Callable[[str], str]:
    """``parameter(value)`` -> the name of a new SSM SecureString parameter."""
    client = aws_client("ssm")

    def make(value: str) -> str:
        key = name("p")
        client.put_parameter(Name=key, Value=value, Type="SecureString")
        return key

    return make


def env_for(endpoint: str, **refs: str) -> dict[str, str]:
    return {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, **refs}


def test_secrets_manager_fills_the_plain_variables(
    sqs_endpoint: str, secret: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    dsn = "postgresql://wahook:p%40ss@db.internal:5432/whatsapp"
    env = env_for(
        sqs_endpoint,
        WAHOOK_DSN_SECRET_ARN=secret(dsn),
        WEBHOOK_SECRET_ARN=secret("app-secret-1,app-secret-2\n"),
        WEBHOOK_VERIFY_TOKEN_ARN=secret("verify-me"),
    )
    with caplog.at_level(logging.INFO, logger="wahook.deploy.secrets"):
        read = load_secrets(env)
    assert read == ["WAHOOK_DSN_SECRET_ARN", "WEBHOOK_SECRET_ARN", "WEBHOOK_VERIFY_TOKEN_ARN"]
    settings = Settings.from_env(env)
    assert settings.dsn == dsn
    assert settings.app_secrets == ("app-secret-1", "app-secret-2")
    assert settings.verify_token == "verify-me"
    assert "p%40ss" not in caplog.text
    assert "verify-me" not in caplog.text
    assert "secrets_loaded" in caplog.text


def test_ssm_securestrings_fill_the_plain_variables(
    sqs_endpoint: str, parameter: Callable[[str], str]
) -> None:
    env = env_for(
        sqs_endpoint,
        WAHOOK_DSN_SSM=parameter("postgresql://u@h/db"),
        WEBHOOK_SECRET_SSM=parameter("s3cret"),
        WEBHOOK_VERIFY_TOKEN_SSM=parameter("tok"),
    )
    assert load_secrets(env) == ["WAHOOK_DSN_SSM", "WEBHOOK_SECRET_SSM", "WEBHOOK_VERIFY_TOKEN_SSM"]
    assert (env["WAHOOK_DSN"], env["WEBHOOK_SECRET"], env["WEBHOOK_VERIFY_TOKEN"]) == (
        "postgresql://u@h/db",
        "s3cret",
        "tok",
    )


def test_rds_json_secret_becomes_db_variables(
    sqs_endpoint: str, secret: Callable[[str], str]
) -> None:
    # What RDS stores for a managed master password: no host in it, so DB_HOST comes from
    # the template; a password with URL-special characters survives into the DSN.
    rds = json.dumps({"username": "postgres", "password": "a/b@c:d", "engine": "postgres"})
    env = env_for(sqs_endpoint, WAHOOK_DSN_SECRET_ARN=secret(rds), DB_HOST="db.internal")
    load_secrets(env)
    assert "WAHOOK_DSN" not in env
    assert Settings.from_env(env).dsn == (
        "postgresql://postgres:a%2Fb%40c%3Ad@db.internal:5432/whatsapp_db"
    )
    full = json.dumps({"username": "u", "password": "p", "host": "h", "port": 6432, "dbname": "wa"})
    env = env_for(sqs_endpoint, WAHOOK_DSN_SECRET_ARN=secret(full))
    load_secrets(env)
    assert Settings.from_env(env).dsn == "postgresql://u:p@h:6432/wa"


def test_a_plain_variable_already_set_wins(sqs_endpoint: str, secret: Callable[[str], str]) -> None:
    env = env_for(sqs_endpoint, WEBHOOK_SECRET_ARN=secret("from-aws"), WEBHOOK_SECRET="local")
    assert load_secrets(env) == []
    assert env["WEBHOOK_SECRET"] == "local"


def test_nothing_to_read_makes_no_client() -> None:
    # No endpoint at all: a client call would fail (the network guard refuses AWS hosts).
    env = {"WEBHOOK_SECRET": "x"}
    assert load_secrets(env) == []
    assert env == {"WEBHOOK_SECRET": "x"}


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        ({"WEBHOOK_SECRET_ARN": "a", "WEBHOOK_SECRET_SSM": "/b"}, "not both"),
        (
            {"WEBHOOK_VERIFY_TOKEN_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:nope"},
            r"WEBHOOK_VERIFY_TOKEN_ARN: could not read .* \(ResourceNotFoundException\)",
        ),
        ({"WAHOOK_DSN_SSM": "/wahook-test/missing"}, r"WAHOOK_DSN_SSM: .*ParameterNotFound"),
    ],
)
def test_unreadable_references_are_config_errors(
    sqs_endpoint: str, refs: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_secrets(env_for(sqs_endpoint, **refs))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"username": "u"}', "needs 'username' and 'password'"),
        ('{"username": "u", "password": "hunter2"}', "no 'host'"),
        ("{not json", "neither a DSN nor JSON"),
    ],
)
def test_bad_database_secrets_say_why_without_the_value(
    sqs_endpoint: str, secret: Callable[[str], str], value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_secrets(env_for(sqs_endpoint, WAHOOK_DSN_SECRET_ARN=secret(value)))
    assert "hunter2" not in str(caught.value)
