"""Checks on the raw request: the POST signature and the GET subscription handshake.

Meta signs the exact bytes it sends with HMAC-SHA256 keyed by the app secret and sends
``X-Hub-Signature-256: sha256=<64 hex>``. Meta's Graph docs say the digest is taken over an
*escaped-unicode* form of the payload (non-ASCII written as lowercase ``\\uXXXX``); bodies
normally arrive already escaped, so the raw bytes match. When a body carries literal
non-ASCII characters, the escaped form is tried too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

_PREFIX = "sha256="


def _escape_unicode(body: bytes) -> bytes | None:
    """The body with every non-ASCII character written as lowercase ``\\uXXXX`` escapes
    (UTF-16 surrogate pairs above U+FFFF), or None when it is ASCII already or not UTF-8."""
    if body.isascii():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return "".join(out).encode("ascii")


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(body: bytes, secret: str | bytes) -> str:
    """The ``X-Hub-Signature-256`` header value Meta would send for ``body``."""
    return _PREFIX + hmac.new(_as_bytes(secret), body, hashlib.sha256).hexdigest()


def verify_signature(
    body: bytes, header: str | bytes | None, secrets: Iterable[str | bytes]
) -> bool:
    """True when ``header`` is a valid ``sha256=`` HMAC of ``body`` under any of ``secrets``.

    Several secrets allow rotation and several apps. The comparison is constant-time;
    every secret is tried even after a match is found elsewhere, so timing says nothing
    about which secret matched. Empty secrets are ignored.
    """
    if header is None:
        return False
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return False
    header = header.strip()
    if header[: len(_PREFIX)].lower() != _PREFIX:
        return False
    try:
        expected = bytes.fromhex(header[len(_PREFIX) :])
    except ValueError:
        return False
    if len(expected) != hashlib.sha256().digest_size:
        return False
    candidates = [body]
    escaped = _escape_unicode(body)
    if escaped is not None:
        candidates.append(escaped)
    ok = False
    for secret in secrets:
        key = _as_bytes(secret)
        if not key:
            continue
        for candidate in candidates:
            digest = hmac.new(key, candidate, hashlib.sha256).digest()
            ok |= hmac.compare_digest(digest, expected)
    return ok


def verify_subscription(params: Mapping[str, str | list[str]], tokens: Iterable[str]) -> str | None:
    """The GET handshake: the ``hub.challenge`` to echo when ``hub.mode`` is ``subscribe``
    and ``hub.verify_token`` equals one of ``tokens``; otherwise None.

    ``params`` may map to single values or to lists (as ``parse_qs`` gives); the first value
    counts. The token comparison is constant-time; empty tokens never match.
    """

    def first(name: str) -> str | None:
        value = params.get(name)
        if isinstance(value, list):
            return value[0] if value else None
        return value

    mode, token, challenge = first("hub.mode"), first("hub.verify_token"), first("hub.challenge")
    if mode != "subscribe" or token is None or challenge is None:
        return None
    given = token.encode("utf-8")
    ok = False
    for candidate in tokens:
        if candidate:
            ok |= hmac.compare_digest(candidate.encode("utf-8"), given)
    return challenge if ok else None
