"""structlog configuration for the long-running commands and the Lambda handler.

Logs are events with constant names and key/value context (``batch_committed``,
``sink_retry``, ``progress`` ...). Secrets never reach the output: values under keys that
name a secret are masked, and passwords inside URLs/DSNs are cut out of every string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"pass|secret|token|authorization|signature|dsn_password", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)


def redact_text(text: str) -> str:
    """``postgresql://user:secret@host`` -> ``postgresql://user:***@host``."""
    return _URL_PASSWORD.sub(r"\g<scheme>***@", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEYS.search(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and URL passwords anywhere in the event."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _redact(value)
    return event_dict


def configure_logging(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines (or a console renderer) at ``level`` on ``stream`` (stderr by default)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
