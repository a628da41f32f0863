"""Decoding a webhook POST: wahook vs ``json.loads`` alone vs pydantic v2, in the same run.

    .venv/bin/python benchmarks/bench_decode.py            # full run (about a minute)
    .venv/bin/python benchmarks/bench_decode.py --rounds 3 # quick look

For each payload it times, per POST body:

- ``wahook``   ``list(decode(body).events())``: typed events with each item's raw bytes,
  problems recorded, every entry × change × item fanned out;
- ``json``     ``json.loads(body)`` alone: untyped dicts, no fan-out, no raw bytes;
- ``pydantic`` ``Envelope.model_validate_json(body)`` with v2 models of the same shape
  (below), then the same fan-out to a list of items (no raw bytes).

Candidates are interleaved round by round and the best round of each is kept, so a
neighbour's burst of CPU load hits them alike; rounds are timed in this process's CPU time
(``time.process_time``), so time spent descheduled on a busy machine does not count. Ratios
are json/wahook and pydantic/wahook: above 1 means wahook is faster.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pydantic
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures import all_bodies, load

from wahook.parse import decode

# --- pydantic v2 models: the shape wahook decodes (models.py), unknown keys ignored ----

Scalar = str | int | float


class PError(BaseModel):
    code: int | str | None = None
    title: str | None = None
    message: str | None = None
    error_data: dict[str, Any] | None = None
    href: str | None = None


class PMetadata(BaseModel):
    display_phone_number: str | None = None
    phone_number_id: str | None = None


class PProfile(BaseModel):
    name: str | None = None
    username: str | None = None
    country_code: str | None = None


class PContact(BaseModel):
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    profile: PProfile | None = None
    identity_key_hash: str | None = None


class PText(BaseModel):
    body: str = ""


class PMedia(BaseModel):
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None
    animated: bool | None = None


class PLocation(BaseModel):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class PSharedContact(BaseModel):
    name: dict[str, str] | None = None
    phones: list[dict[str, str]] = []
    emails: list[dict[str, str]] = []
    addresses: list[dict[str, str]] = []
    org: dict[str, str] | None = None
    urls: list[dict[str, str]] = []
    birthday: str | None = None


class PInteractive(BaseModel):
    type: str | None = None
    button_reply: dict[str, str] | None = None
    list_reply: dict[str, str] | None = None
    nfm_reply: dict[str, str] | None = None
    call_permission_reply: dict[str, Scalar | bool] | None = None


class PReferredProduct(BaseModel):
    catalog_id: str | None = None
    product_retailer_id: str | None = None


class PContext(BaseModel):
    from_: str | None = Field(default=None, alias="from")
    id: str | None = None
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    referred_product: PReferredProduct | None = None


class PProductItem(BaseModel):
    product_retailer_id: str | None = None
    quantity: Scalar | None = None
    item_price: Scalar | None = None
    currency: str | None = None


class POrder(BaseModel):
    catalog_id: str | None = None
    text: str | None = None
    product_items: list[PProductItem] = []


class PMessage(BaseModel):
    id: str
    type: str = "unknown"
    from_: str = Field(default="", alias="from")
    from_user_id: str | None = None
    timestamp: Scalar | None = None
    group_id: str | None = None
    context: PContext | None = None
    referral: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    errors: list[PError] = []
    text: PText | None = None
    image: PMedia | None = None
    audio: PMedia | None = None
    video: PMedia | None = None
    document: PMedia | None = None
    sticker: PMedia | None = None
    location: PLocation | None = None
    contacts: list[PSharedContact] | None = None
    interactive: PInteractive | None = None
    button: dict[str, str] | None = None
    reaction: dict[str, str] | None = None
    order: POrder | None = None
    system: dict[str, str] | None = None
    unsupported: dict[str, str] | None = None
    edit: dict[str, Any] | None = None
    revoke: dict[str, str] | None = None


class POrigin(BaseModel):
    type: str | None = None


class PConversation(BaseModel):
    id: str | None = None
    expiration_timestamp: Scalar | None = None
    origin: POrigin | None = None


class PPricing(BaseModel):
    billable: bool | None = None
    pricing_model: str | None = None
    type: str | None = None
    category: str | None = None


class PStatus(BaseModel):
    id: str
    status: str
    timestamp: Scalar | None = None
    recipient_id: str | None = None
    recipient_type: str | None = None
    recipient_user_id: str | None = None
    biz_opaque_callback_data: str | None = None
    conversation: PConversation | None = None
    pricing: PPricing | None = None
    errors: list[PError] = []
    type: str | None = None


class PValue(BaseModel):
    metadata: PMetadata | None = None
    contacts: list[PContact] | None = None
    messages: list[PMessage] | None = None
    statuses: list[PStatus] | None = None
    errors: list[PError] | None = None
    calls: list[dict[str, Any]] | None = None
    user_preferences: list[dict[str, Any]] | None = None
    message_echoes: list[PMessage] | None = None
    state_sync: list[dict[str, Any]] | None = None
    history: list[dict[str, Any]] | None = None
    groups: list[dict[str, Any]] | None = None


class PChange(BaseModel):
    field: str
    value: PValue | dict[str, Any] | Any


class PEntry(BaseModel):
    id: str | int
    time: Scalar | None = None
    changes: list[PChange]


class PEnvelope(BaseModel):
    object: str
    entry: list[PEntry]


_ARRAYS = tuple(k for k in PValue.model_fields if k not in ("metadata", "contacts"))


def pydantic_events(body: bytes) -> list[Any]:
    env = PEnvelope.model_validate_json(body)
    out: list[Any] = []
    for entry in env.entry:
        for change in entry.changes:
            value = change.value
            if not isinstance(value, PValue):
                out.append(value)
                continue
            found = False
            for key in _ARRAYS:
                items = getattr(value, key)
                if items is not None:
                    found = True
                    out.extend(items)
            if not found:
                out.append(value)
    return out


def wahook_events(body: bytes) -> list[Any]:
    return list(decode(body).events())


# --- timing --------------------------------------------------------------------------


def best_of(
    candidates: dict[str, Callable[[], object]], rounds: int, budget: float
) -> dict[str, float]:
    """Seconds per call of each candidate: the best of ``rounds`` interleaved rounds, each
    round running a candidate about ``budget`` seconds."""
    numbers = {}
    for name, fn in candidates.items():
        n, elapsed = 1, 0.0
        while elapsed < budget / 4:
            start = time.process_time()
            for _ in range(n):
                fn()
            elapsed = time.process_time() - start
            if elapsed < budget / 4:
                n *= 2
        numbers[name] = max(1, int(n * budget / max(elapsed, 1e-9)))
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, fn in candidates.items():
            n = numbers[name]
            start = time.process_time()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.process_time() - start) / n)
    return best


def run_case(name: str, bodies: list[bytes], rounds: int, budget: float) -> dict[str, Any]:
    events = sum(len(wahook_events(b)) for b in bodies)
    same = sum(len(pydantic_events(b)) for b in bodies)
    if same != events:
        raise SystemExit(f"{name}: pydantic fans out {same} items, wahook {events} events")

    def each(fn: Callable[[bytes], object]) -> Callable[[], object]:
        if len(bodies) == 1:
            body = bodies[0]
            return lambda: fn(body)
        return lambda: [fn(b) for b in bodies]

    secs = best_of(
        {
            "wahook": each(wahook_events),
            "json": each(json.loads),
            "pydantic": each(pydantic_events),
        },
        rounds,
        budget,
    )
    return {
        "name": name,
        "bodies": len(bodies),
        "bytes": sum(map(len, bodies)),
        "events": events,
        **secs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (best kept)")
    parser.add_argument("--budget", type=float, default=0.05, help="seconds per timing")
    args = parser.parse_args()

    corpus = all_bodies()
    cases = [
        ("a) 1 status, conversation+pricing", [load("status_sent_pricing")]),
        ("b) 1 text message + contacts", [load("msg_text")]),
        ("c) POST with 50 statuses", [load("statuses_50")]),
        (f"d) mixed corpus ({len(corpus)} fixtures)", list(corpus.values())),
    ]
    print(f"wahook from {Path(decode.__code__.co_filename).parent}")
    print(
        f"python {platform.python_version()}, msgspec {msgspec.__version__}, "
        f"pydantic {pydantic.VERSION}, gc {'on' if gc.isenabled() else 'off'}, "
        f"{args.rounds} rounds × {args.budget}s, best round kept"
    )
    head = (
        f"{'payload':36} {'events':>6} {'wahook µs':>10} {'json µs':>9} {'pydantic µs':>11}"
        f" {'wahook ev/s':>12} {'json/wahook':>11} {'pydantic/wahook':>15}"
    )
    print(head)
    print("-" * len(head))
    for name, bodies in cases:
        r = run_case(name, bodies, args.rounds, args.budget)
        us = {k: r[k] * 1e6 for k in ("wahook", "json", "pydantic")}
        print(
            f"{name:36} {r['events']:>6} {us['wahook']:>10.1f} {us['json']:>9.1f}"
            f" {us['pydantic']:>11.1f} {r['events'] / r['wahook']:>12,.0f}"
            f" {r['json'] / r['wahook']:>10.2f}× {r['pydantic'] / r['wahook']:>14.2f}×",
            flush=True,
        )


if __name__ == "__main__":
    main()
