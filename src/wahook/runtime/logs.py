"""structlog configuration for the long-running commands and the Lambda handler.

Logs are events with constant names and key/value context (``batch_committed``,
``sink_retry``, ``progress`` ...). Secrets never reach the output: text under keys that
name a secret is masked (a number under such a key, ``secrets_tried=2``, is a count and is
kept), and passwords inside URLs/DSNs and AWS request signatures, credentials and
session tokens are cut out of every string.

The standard library's records (the receiver's, which must not import structlog, and the
libraries': botocore, aiohttp, asyncio) join the same stream through ``StdlibBridge``:
wahook's ``event key=%s`` records become events with their fields, of their original
types; a library's record keeps its whole message as the event. botocore's signing
internals (``botocore.auth``: canonical request, string to sign, signature) are dropped
at every level.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"pass|secret|token|authorization|signature|dsn_password", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
# AWS SigV4 as botocore prints it at DEBUG: the Authorization header's credential scope and
# signature, presigned-URL parameters, session tokens, and bare access key ids.
_AWS_SECRETS = re.compile(
    r"(?P<key>Credential=|Signature=|X-Amz-Credential=|X-Amz-Signature=|"
    r"X-Amz-Security-Token['\"]?\s*[:=]\s*b?['\"]?)[^\s,'\"&]+"
    r"|\b(?-i:(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16})\b",
    re.I,
)
_LEVELS: Mapping[str, int] = logging.getLevelNamesMapping()
# Loggers whose every record is a secret in the making.
_DROPPED_LOGGERS = ("botocore.auth",)


def redact_text(text: str) -> str:
    """``postgresql://user:secret@host`` -> ``postgresql://user:***@host``; AWS request
    signatures, credentials and session tokens -> ``***``."""
    text = _URL_PASSWORD.sub(r"\g<scheme>***@", text)
    return _AWS_SECRETS.sub(lambda m: (m.group("key") or "") + "***", text)


def _mask(value: Any) -> Any:
    """The value of a secret-named key: text masked; a number, boolean or None (a count,
    a flag) is not a secret and is kept."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return "***"


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: _mask(v) if _SECRET_KEYS.search(str(k)) else _redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and URL passwords anywhere in the event."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = _mask(value)
        else:
            event_dict[key] = _redact(value)
    return event_dict


# ``event_name key=%s other=%d``: the receiver's records (see ``receiver/core.py``).
_EVENT = re.compile(r"[a-z][a-z0-9_]*")
_TEMPLATE_FIELD = re.compile(r"(?:^| )(\w+)=%[-#0 +]*\d*(?:\.(\d+))?([sdifrxXeEgG])")
_TEXT_FIELD = re.compile(r"(?:^| )(\w+)=")


def _fields(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """The event name and fields of one stdlib record."""
    template = str(record.msg)
    name, _, rest = template.partition(" ")
    if not record.name.startswith("wahook") or not _EVENT.fullmatch(name):
        # A library's sentence ("Found credentials in environment variables."): whole.
        return record.getMessage(), {}
    args = record.args if isinstance(record.args, tuple) else ()
    specs = _TEMPLATE_FIELD.findall(rest)
    if len(specs) == len(args) and rest.count("%") == len(args):
        # The values as they were passed: a count stays a number, text stays text.
        return name, {
            key: _typed(value, precision, conversion)
            for (key, precision, conversion), value in zip(specs, args, strict=True)
        }
    _, _, text = record.getMessage().partition(" ")
    marks = list(_TEXT_FIELD.finditer(text))
    return name, {
        m.group(1): text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else None]
        for i, m in enumerate(marks)
    }


def _typed(value: Any, precision: str, conversion: str) -> Any:
    if conversion in "di" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if conversion in "fFeEgG" and isinstance(value, int | float):
        return round(float(value), int(precision)) if precision else float(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class StdlibBridge(logging.Handler):
    """A stdlib handler that hands every record to structlog: the same format, the same
    redaction, one stream."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_DROPPED_LOGGERS):
            return
        try:
            event, fields = _fields(record)
        except Exception:  # a malformed record must not cost the caller its request
            self.handleError(record)
            return
        fields["logger"] = record.name
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        structlog.get_logger().log(record.levelno, event, **fields)


def route_stdlib(level: str) -> None:
    """Send every stdlib record at ``level`` or above through ``StdlibBridge`` (after
    ``configure_logging``)."""
    root = logging.getLogger()
    root.setLevel(_LEVELS.get(level.upper(), logging.INFO))
    root.handlers[:] = [StdlibBridge()]


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
            _LEVELS.get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
