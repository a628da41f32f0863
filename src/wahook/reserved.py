"""Identifiers wahook reserves for its own test traffic.

``wahook check`` and ``wahook send-test`` (unless told another phone number id) send their
samples as this phone number and WABA id. No organization may have them (``wahook org add``
refuses them), and the sink quarantines their items as ``test`` traffic: a check of a
production endpoint never writes a tenant's rows.
"""

from __future__ import annotations

TEST_PHONE_NUMBER_ID = "000000000000000"
TEST_WABA_ID = "000000000000000"


def is_test_traffic(phone_number_id: str | None, waba_id: str | None) -> bool:
    """True for an item of the reserved test ids (by phone number id, else WABA id)."""
    if phone_number_id:
        return phone_number_id == TEST_PHONE_NUMBER_ID
    return waba_id == TEST_WABA_ID
