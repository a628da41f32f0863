"""The one exception tree of wahook. Imports nothing from the rest of the package."""

from __future__ import annotations


class WahookError(Exception):
    """Root of every error wahook raises on purpose."""


class DecodeError(WahookError, ValueError):
    """A body that is not a WhatsApp notification at all.

    ``reason`` says what is wrong in words a person can act on; ``position`` is the byte
    offset where the problem was found, when known.
    """

    def __init__(self, reason: str, *, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        super().__init__(reason if position is None else f"{reason} (at byte {position})")


class SignatureError(WahookError):
    """A POST whose X-Hub-Signature-256 is missing or does not match any configured secret."""


class ConfigError(WahookError, ValueError):
    """Settings that cannot work (missing DSN, malformed URL, bad number ...)."""


class InputError(WahookError, ValueError):
    """A replay input that cannot hold webhook bodies in any form wahook reads (another
    compression, pretty-printed JSON where one body per line is expected, nothing at all).
    ``path`` names the input (``stdin`` for ``-``); ``reason`` says what to do instead."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class SinkError(WahookError):
    """A sink could not apply a batch (after its own retries)."""


class TransientError(SinkError):
    """A failure worth retrying: connection lost, timeout, serialization failure, deadlock."""


class PermanentError(SinkError):
    """A failure that retrying cannot fix: the input itself is at fault."""


class UnknownTenantError(PermanentError):
    """No organization matches the item's phone_number_id or WABA id."""

    def __init__(self, phone_number_id: str | None, waba_id: str | None) -> None:
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        super().__init__(
            f"no organization for phone_number_id={phone_number_id!r} waba_id={waba_id!r}"
        )


class MigrationError(WahookError):
    """The schema could not be brought up to date."""
