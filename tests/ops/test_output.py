"""Masking what the ops commands print (unit: no I/O)."""

from __future__ import annotations

from wahook.ops.output import Masker
from wahook.settings import Settings


def test_masks_every_configured_secret_and_dsn_passwords() -> None:
    settings = Settings(
        dsn="postgresql://wahook:p%40ss-W0rd@db.internal:5432/whatsapp_db",
        verify_token="tok-abcdef",
        app_secrets=("first-secret", "first-secret-rotated"),
    )
    mask = Masker.from_settings(settings)
    text = (
        "dsn postgresql://wahook:p%40ss-W0rd@db.internal:5432/whatsapp_db token=tok-abcdef "
        "secrets first-secret-rotated first-secret raw p@ss-W0rd"
    )
    masked = mask(text)
    for secret in ("p%40ss-W0rd", "p@ss-W0rd", "tok-abcdef", "first-secret"):
        assert secret not in masked
    # The longer secret is masked whole, not left with a visible tail.
    assert "-rotated" not in masked
    assert "postgresql://wahook:***@db.internal:5432/whatsapp_db" in masked


def test_short_values_are_not_masked_everywhere() -> None:
    mask = Masker(["ab", None, ""])
    assert mask("abc ab") == "abc ab"
    mask.add("abcd")
    assert mask("abcd abc") == "*** abc"
