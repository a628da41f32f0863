"""Sample webhook bodies shaped like Meta's, for ``wahook post --sample``, tests and
benchmarks. Written the way Meta writes them: compact JSON, non-ASCII as lowercase
``\\uXXXX`` escapes (so the raw bytes are what Meta signs)."""

from __future__ import annotations

import json
from typing import Any

# The ids of test traffic (`wahook check`, `wahook send-test` by default), re-exported: no
# organization may have them, and the sink quarantines their items as test traffic.
from wahook.reserved import TEST_PHONE_NUMBER_ID as TEST_PHONE_NUMBER_ID
from wahook.reserved import TEST_WABA_ID as TEST_WABA_ID

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
SENDER = "16505551234"
EMOJI_TEXT = "Olá 👋 café ☕ — مرحبا 😀"


def text_message(i: int, *, sender: str = SENDER, text: str = EMOJI_TEXT) -> dict[str, Any]:
    return {
        "from": sender,
        "id": f"wamid.SAMPLE{i:012d}",
        "timestamp": str(1749416383 + i),
        "type": "text",
        "text": {"body": f"{text} #{i}"},
    }


def status(i: int, value: str = "delivered", *, recipient: str = SENDER) -> dict[str, Any]:
    return {
        "id": f"wamid.OUT{i:012d}",
        "status": value,
        "timestamp": str(1749416400 + i),
        "recipient_id": recipient,
    }


def change(
    messages: list[dict[str, Any]] = (),  # type: ignore[assignment]  # never mutated
    statuses: list[dict[str, Any]] = (),  # type: ignore[assignment]
    *,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": DISPLAY_PHONE_NUMBER,
            "phone_number_id": phone_number_id,
        },
    }
    if messages:
        senders = dict.fromkeys(m["from"] for m in messages)
        value["contacts"] = [{"profile": {"name": "Shéena Nelson"}, "wa_id": s} for s in senders]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {"value": value, "field": "messages"}


def notification(*entries: tuple[str, list[dict[str, Any]]]) -> bytes:
    """A body of ``(waba_id, changes)`` entries, encoded as Meta encodes."""
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": changes} for waba, changes in entries],
    }
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sample(
    messages: int = 1,
    statuses: int = 1,
    *,
    start: int = 0,
    waba_id: str = WABA_ID,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> bytes:
    """One entry, one change: ``messages`` incoming texts and ``statuses`` statuses."""
    msgs = [text_message(start + i) for i in range(messages)]
    sts = [status(start + i) for i in range(statuses)]
    return notification((waba_id, [change(msgs, sts, phone_number_id=phone_number_id)]))


def sized(target: int, *, start: int = 0) -> bytes:
    """A body of about ``target`` bytes (messages added until it is reached)."""
    one = len(sample(1, 0, start=start))
    per = len(json.dumps(text_message(0), ensure_ascii=True)) + 1
    n = max(1, (target - one) // per + 1)
    return sample(n, 0, start=start)


def single(target: int, i: int = 0) -> bytes:
    """One text message (Meta's most common POST), its text padded to about ``target`` bytes."""
    base = sample(1, 0, start=i)
    pad = max(0, target - len(base))
    msg = text_message(i, text=EMOJI_TEXT + " " + "lorem ipsum " * (pad // 12 + 1))
    return notification((WABA_ID, [change([msg])]))
