"""Settings: one frozen object built once from the environment; CLI flags override it.

The original two-Lambda deployment's variable names are accepted (``DB_HOST`` ...,
``SQS_QUEUE_URL``, ``WEBHOOK_VERIFY_TOKEN``, ``WEBHOOK_SECRET``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from wahook.errors import ConfigError


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def whole_number(raw: str, *, low: int = 1, high: int | None = None) -> int:
    """``raw`` as a whole number in ``[low, high]``, else ``ValueError`` saying the form."""
    form = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be {form}, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise ValueError(f"must be {form}, got {raw!r}")
    return value


def seconds(raw: str, *, positive: bool = True) -> float:
    """``raw`` as a finite number of seconds (above 0 if ``positive``), else ``ValueError``."""
    form = "a number of seconds above 0" if positive else "a number of seconds, 0 or more"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be {form}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"must be {form}, got {raw!r}")
    return value


def _int(
    env: Mapping[str, str], name: str, default: int, *, low: int = 1, high: int | None = None
) -> int:
    # A bad value names the variable and the form it must take: `wahook` prints that one
    # line and exits 2.
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return whole_number(raw, low=low, high=high)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _int(env, name, default, low=0, high=65535)


def _float(env: Mapping[str, str], name: str, default: float, *, positive: bool = True) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return seconds(raw, positive=positive)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def dsn_from_env(env: Mapping[str, str]) -> str | None:
    """``WAHOOK_DSN``, else a DSN assembled from the original ``DB_*`` variables, else None."""
    if env.get("WAHOOK_DSN"):
        return env["WAHOOK_DSN"]
    host = env.get("DB_HOST")
    if not host:
        return None
    user = quote(env.get("DB_USER", "postgres"), safe="")
    password = env.get("DB_PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    port = _port(env, "DB_PORT", 5432)
    name = quote(env.get("DB_NAME", "whatsapp_db"), safe="")
    return f"postgresql://{auth}@{host}:{port}/{name}"


AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def aws_endpoint_url(configured: str | None, queue_url: str | None = None) -> str | None:
    """The endpoint every wahook AWS client (SQS, CloudWatch, Logs) is made with.

    ``configured`` wins: ``Settings.aws_endpoint_url``, i.e. ``--endpoint-url``, else
    ``WAHOOK_AWS_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL``. Otherwise a queue URL whose host
    is not an AWS host (``http://127.0.0.1:5000/123456789012/wahook``, moto, LocalStack ...)
    names its own endpoint, ``scheme://host:port``: botocore would ignore that host and go
    to the regional AWS endpoint. ``None``: botocore's regional endpoint."""
    if configured:
        return configured
    if not queue_url:
        return None
    parts = urlsplit(queue_url)
    host = (parts.hostname or "").lower().rstrip(".")
    if not parts.scheme or not host:
        return None
    if any(host.endswith(suffix) or host == suffix[1:] for suffix in AWS_HOST_SUFFIXES):
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def is_loopback_url(url: str | None) -> bool:
    """True for ``http://127.0.0.1:5000``, ``http://localhost``, ``http://[::1]`` ..."""
    host = (urlsplit(url).hostname or "") if url else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def aws_client_args(
    region: str, endpoint_url: str | None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``create_client``: region and endpoint, and, for a loopback
    endpoint (moto, LocalStack) with no credentials in the environment, placeholder ones,
    so botocore never goes looking for credentials at the instance metadata address."""
    e = os.environ if env is None else env
    args: dict[str, Any] = {"region_name": region, "endpoint_url": endpoint_url}
    if is_loopback_url(endpoint_url) and not (e.get("AWS_ACCESS_KEY_ID") or e.get("AWS_PROFILE")):
        args["aws_access_key_id"] = "local"
        args["aws_secret_access_key"] = "local"  # any is accepted
    return args


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything wahook reads from its environment. Secrets are excluded from ``repr``."""

    dsn: str | None = None
    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    verify_token: str | None = dataclasses.field(default=None, repr=False)
    app_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    log_format: str = "json"
    log_level: str = "info"
    batch_size: int = 1000
    batch_max_age: float = 0.2
    pool_min: int = 1
    pool_max: int = 5
    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int | None = None
    max_body_bytes: int = 3 * 1024 * 1024 + 64 * 1024
    data_dir: str = ".wahook"
    grace_seconds: float = 20.0
    sqs_receivers: int = 4
    writers: int = 2
    progress_seconds: float = 10.0
    sqs_max_message_bytes: int = 256 * 1024
    gc_threshold: int = 50_000
    header_timeout: float = 10.0
    """``wahook serve``: seconds a connection has to send a whole request head."""
    body_timeout: float = 30.0
    """``wahook serve``: seconds a request has to send its body once its head is in."""
    max_connections: int = 0
    """``wahook serve``: open connections at most; 0 = the file-descriptor limit less room
    for everything else the process holds."""
    connection_log_seconds: float = 10.0
    """``wahook serve``: failed accepts, timeouts and shed connections are logged as one
    line with counts per this many seconds."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        return cls(
            dsn=dsn_from_env(e),
            queue_url=e.get("WAHOOK_QUEUE_URL") or e.get("SQS_QUEUE_URL") or None,
            dead_letter_queue_url=e.get("WAHOOK_DLQ_URL") or None,
            verify_token=e.get("WEBHOOK_VERIFY_TOKEN") or None,
            app_secrets=_split(e.get("WEBHOOK_SECRET")),
            aws_region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=e.get("WAHOOK_AWS_ENDPOINT_URL") or e.get("AWS_ENDPOINT_URL") or None,
            log_format=_choice(e, "WAHOOK_LOG_FORMAT", "json", ("json", "console")),
            log_level=_choice(e, "WAHOOK_LOG_LEVEL", "info", LOG_LEVELS),
            batch_size=_int(e, "WAHOOK_BATCH_SIZE", 1000),
            batch_max_age=_float(e, "WAHOOK_BATCH_MAX_AGE", 0.2, positive=False),
            pool_min=_int(e, "WAHOOK_POOL_MIN", 1, low=0),
            pool_max=_int(e, "WAHOOK_POOL_MAX", 5),
            host=e.get("WAHOOK_HOST", "127.0.0.1"),
            port=_port(e, "WAHOOK_PORT", 8080),
            metrics_port=_port(e, "WAHOOK_METRICS_PORT", 0) or None,
            max_body_bytes=_int(e, "WAHOOK_MAX_BODY_BYTES", 3 * 1024 * 1024 + 64 * 1024),
            data_dir=e.get("WAHOOK_DATA_DIR", ".wahook"),
            grace_seconds=_float(e, "WAHOOK_GRACE_SECONDS", 20.0, positive=False),
            sqs_receivers=_int(e, "WAHOOK_SQS_RECEIVERS", 4),
            writers=_int(e, "WAHOOK_WRITERS", 2),
            progress_seconds=_float(e, "WAHOOK_PROGRESS_SECONDS", 10.0),
            sqs_max_message_bytes=_int(e, "WAHOOK_SQS_MAX_MESSAGE_BYTES", 256 * 1024),
            gc_threshold=_int(e, "WAHOOK_GC_THRESHOLD", 50_000, low=0),
            header_timeout=_float(e, "WAHOOK_HEADER_TIMEOUT", 10.0),
            body_timeout=_float(e, "WAHOOK_BODY_TIMEOUT", 30.0),
            max_connections=_int(e, "WAHOOK_MAX_CONNECTIONS", 0, low=0),
            connection_log_seconds=_float(e, "WAHOOK_CONNECTION_LOG_SECONDS", 10.0),
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values are ignored (unset flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
