"""``wahook send-test``: realistic signed webhooks of one kind (the original design's
``npm run test:*``), and, given a database, the rows they produced.

Every run makes fresh wamids (``wamid.WAHOOKTEST<run>...``), so running it twice stores
twice instead of de-duplicating into the first run's rows. Bodies are written as Meta
writes them (compact JSON, ``\\uXXXX`` escapes) by ``wahook.receiver.samples``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from wahook.receiver import samples
from wahook.testing import status as status_item
from wahook.testing import text_message

KINDS = ("verification", "status", "incoming", "interactive", "media", "batch")

Body = tuple[str, bytes, list[str]]  # (what it is, the bytes, the wamids it carries)


class Builder:
    """The bodies of one run, for one phone number id / WABA id."""

    def __init__(self, phone_number_id: str, waba_id: str, run: str | None = None) -> None:
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.run = run or f"{int(time.time())}{secrets.token_hex(3).upper()}"
        self.now = int(time.time())
        self._n = 0

    def wamid(self, kind: str) -> str:
        self._n += 1
        return f"wamid.WAHOOKTEST{kind.upper()}{self.run}N{self._n:03d}"

    def body(
        self, messages: Sequence[dict[str, Any]] = (), statuses: Sequence[dict[str, Any]] = ()
    ) -> bytes:
        change = samples.change(
            list(messages), list(statuses), phone_number_id=self.phone_number_id
        )
        return samples.notification((self.waba_id, [change]))

    def message(self, type_: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "from": samples.SENDER,
            "id": self.wamid(type_),
            "timestamp": str(self.now),
            "type": type_,
            type_: content,
            **extra,
        }

    # --- kinds ----------------------------------------------------------------------

    def status(self) -> list[Body]:
        """One outgoing message's life: sent (with conversation and pricing), delivered,
        read, each its own POST as Meta sends them."""
        wamid = self.wamid("status")
        pricing = {"billable": True, "pricing_model": "PMP", "category": "marketing"}
        conversation = {"id": f"conv{self.run}", "origin": {"type": "marketing"}}
        out = []
        for i, value in enumerate(("sent", "delivered", "read")):
            extra = {"pricing": pricing, "conversation": conversation} if i == 0 else {}
            item = status_item(wamid, value, self.now + i, recipient=samples.SENDER, **extra)
            out.append((f"status {value}", self.body(statuses=[item]), [wamid]))
        return out

    def incoming(self) -> list[Body]:
        item = text_message(
            self.wamid("text"),
            f"{samples.EMOJI_TEXT} (wahook send-test)",
            self.now,
            sender=samples.SENDER,
        )
        return [("incoming text", self.body([item]), [item["id"]])]

    def interactive(self) -> list[Body]:
        reply_to = {"from": samples.DISPLAY_PHONE_NUMBER, "id": self.wamid("sent")}
        button = self.message(
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
            context=reply_to,
        )
        listed = self.message(
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {"id": "express", "title": "Express", "description": "Next day"},
            },
            context=reply_to,
        )
        return [
            ("interactive button_reply", self.body([button]), [button["id"]]),
            ("interactive list_reply", self.body([listed]), [listed["id"]]),
        ]

    def media(self) -> list[Body]:
        def media(type_: str, mime: str, **extra: Any) -> dict[str, Any]:
            media_id = str(1_000_000_000_000_000 + secrets.randbelow(10**15))
            digest = secrets.token_urlsafe(32)
            return self.message(
                type_, {"mime_type": mime, "sha256": digest, "id": media_id, **extra}
            )

        items = [
            media("image", "image/jpeg", caption="wahook send-test image"),
            media("document", "application/pdf", caption="Invoice", filename="invoice.pdf"),
            media("audio", "audio/ogg; codecs=opus", voice=True),
            media("video", "video/mp4", caption="wahook send-test video"),
            media("sticker", "image/webp", animated=False),
        ]
        return [(f"media {m['type']}", self.body([m]), [m["id"]]) for m in items]

    def batch(self) -> list[Body]:
        """One POST carrying 10 incoming messages and 20 statuses, as Meta batches."""
        messages = [
            text_message(
                self.wamid("batch"), f"batch message {i}", self.now + i, sender=samples.SENDER
            )
            for i in range(10)
        ]
        statuses = [
            status_item(
                self.wamid("batchout"),
                ("sent", "delivered", "read")[i % 3],
                self.now + i,
                recipient=samples.SENDER,
            )
            for i in range(20)
        ]
        wamids = [m["id"] for m in messages] + [s["id"] for s in statuses]
        return [("batch of 10 messages, 20 statuses", self.body(messages, statuses), wamids)]

    def bodies(self, kind: str) -> list[Body]:
        build: dict[str, Callable[[], list[Body]]] = {
            "status": self.status,
            "incoming": self.incoming,
            "interactive": self.interactive,
            "media": self.media,
            "batch": self.batch,
        }
        return build[kind]()


def format_rows(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for table, found in rows.items():
        if not found:
            continue
        lines.append(f"{table}: {len(found)} rows")
        for row in found:
            lines.append("  " + "  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    return lines or ["no rows"]
