"""Secrets fetched at a Lambda's cold start, from Secrets Manager or SSM Parameter Store.

The deployed functions get *references* in their environment, never the values; this fills
the plain variables ``Settings.from_env()`` reads, once per container, before it runs:

=========================  ============================  ===========================
reference (Secrets Mgr)    reference (SSM SecureString)  fills
=========================  ============================  ===========================
``WAHOOK_DSN_SECRET_ARN``  ``WAHOOK_DSN_SSM``            ``WAHOOK_DSN`` (or ``DB_*``)
``WEBHOOK_SECRET_ARN``     ``WEBHOOK_SECRET_SSM``        ``WEBHOOK_SECRET``
``WEBHOOK_VERIFY_TOKEN_ARN``  ``WEBHOOK_VERIFY_TOKEN_SSM``  ``WEBHOOK_VERIFY_TOKEN``
=========================  ============================  ===========================

A Secrets Manager reference is the secret's ARN (or name), an SSM one the parameter's name.
A plain variable that is already set wins: its reference is not fetched. The database
secret may hold a DSN (``postgresql://...``) or the JSON that RDS keeps for a managed
master password (``{"username": ..., "password": ..., "host": ...}``): the JSON fills
``DB_USER``/``DB_PASSWORD`` (and ``DB_HOST``/``DB_PORT``/``DB_NAME`` when it has them),
which ``Settings`` assembles into a DSN. Errors name the variable, never a value.

Synchronous botocore only: the receiver's package has no asyncio stack.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import MutableMapping
from typing import Any

from wahook.errors import ConfigError

log = logging.getLogger("wahook.deploy.secrets")

# (plain variable, Secrets Manager reference, SSM reference)
SECRETS = (
    ("WAHOOK_DSN", "WAHOOK_DSN_SECRET_ARN", "WAHOOK_DSN_SSM"),
    ("WEBHOOK_SECRET", "WEBHOOK_SECRET_ARN", "WEBHOOK_SECRET_SSM"),
    ("WEBHOOK_VERIFY_TOKEN", "WEBHOOK_VERIFY_TOKEN_ARN", "WEBHOOK_VERIFY_TOKEN_SSM"),
)

# The RDS-managed secret's keys -> the original design's DB_* variables.
_DB_KEYS = {
    "username": "DB_USER",
    "password": "DB_PASSWORD",
    "host": "DB_HOST",
    "port": "DB_PORT",
    "dbname": "DB_NAME",
}


def _client(service: str, env: MutableMapping[str, str]) -> Any:
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}
    )
    return botocore.session.get_session().create_client(
        service,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        endpoint_url=env.get("WAHOOK_AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL") or None,
        config=config,
    )


def _fetch(kind: str, reference: str, variable: str, client: Any) -> str:
    try:
        if kind == "secretsmanager":
            got = client.get_secret_value(SecretId=reference)
            if "SecretString" in got:
                return str(got["SecretString"])
            return bytes(got["SecretBinary"]).decode("utf-8")
        return str(client.get_parameter(Name=reference, WithDecryption=True)["Parameter"]["Value"])
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        raise ConfigError(
            f"{variable}: could not read {reference!r} from {kind} ({code}); check the name "
            "and that the function's role may read it"
        ) from None


def _fill_database(value: str, variable: str, env: MutableMapping[str, str]) -> None:
    if not value.lstrip().startswith("{"):
        env["WAHOOK_DSN"] = value.strip()
        return
    try:
        doc = json.loads(value)
    except ValueError:
        raise ConfigError(f"{variable}: the secret is neither a DSN nor JSON") from None
    if not isinstance(doc, dict) or not doc.get("username") or not doc.get("password"):
        raise ConfigError(f"{variable}: the JSON secret needs 'username' and 'password'")
    for key, target in _DB_KEYS.items():
        if doc.get(key) not in (None, ""):
            env[target] = str(doc[key])
    if not env.get("DB_HOST"):
        raise ConfigError(f"{variable}: the JSON secret has no 'host' and DB_HOST is not set")


def load_secrets(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Fill the plain variables from their references; returns the references read.

    Call once per container, before ``Settings.from_env()``. Raises ``ConfigError`` when a
    reference is set twice, or cannot be read."""
    target_env = os.environ if env is None else env
    clients: dict[str, Any] = {}
    read: list[str] = []
    for plain, arn_var, ssm_var in SECRETS:
        arn, ssm = target_env.get(arn_var), target_env.get(ssm_var)
        if arn and ssm:
            raise ConfigError(f"set {arn_var} or {ssm_var}, not both")
        if not (arn or ssm) or target_env.get(plain):
            continue
        kind, reference, variable = (
            ("secretsmanager", arn, arn_var) if arn else ("ssm", ssm or "", ssm_var)
        )
        if kind not in clients:
            clients[kind] = _client(kind, target_env)
        value = _fetch(kind, str(reference), variable, clients[kind])
        if plain == "WAHOOK_DSN":
            _fill_database(value, variable, target_env)
        else:
            target_env[plain] = value.strip()
        read.append(variable)
    for client in clients.values():
        client.close()
    if read:
        log.info("secrets_loaded references=%s", ",".join(read))
    return read
