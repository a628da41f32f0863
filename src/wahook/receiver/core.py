"""The receiver without a transport: (method, path, query, headers, body) in, a decision out.

Every adapter (the Lambda handler, the aiohttp app of ``wahook serve``) turns its request
into a ``Request``, calls ``Receiver.handle`` and either sends the ``Response`` it gets or,
for an ``Accepted`` body, delivers it (SQS, the in-process pipeline) and answers with
``Receiver.delivered`` / ``Receiver.not_delivered``. No I/O happens here.

Answers, and why:

- ``GET`` with ``hub.mode=subscribe`` and a verify token that matches the configured one or
  any organization's: 200 and the challenge as text/plain. Anything else: 403.
- ``POST`` larger than the limit: 413. No ``X-Hub-Signature-256``: 401. A signature that
  matches none of the configured app secrets nor the app secret of an organization the
  body names: 403. Meta retries these, but they are not Meta's.
- The *verdict* of an accepted body (``wahook.verdict``): ``ANY`` when a configured
  (deployment-wide) secret verified it, else every organization holding an app secret that
  verified it. It travels with the body; the sink stores an item only for an organization
  the verdict allows, so one tenant's secret can never write another tenant's rows.
- A correctly signed body is accepted and delivered **as received**, whether or not it
  is a WhatsApp notification: Meta signed it, so it is kept. The processor decodes it and
  quarantines what is not a notification (raw bytes and reason), and Meta gets its 200
  and stops retrying. ``Summary.problem`` already tells the adapter and the logs why.
- The body could not be delivered (queue refused, pipeline stopped): 503, so Meta
  retries later and nothing is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol

from wahook.parse import verify_signature, verify_subscription
from wahook.receiver.envelope import Summary, summarize
from wahook.verdict import ANY, Verdict

log = logging.getLogger("wahook.receiver")

SIGNATURE_HEADER = "x-hub-signature-256"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
WEBHOOK_PATH = "/webhook"
_TEXT = {"content-type": "text/plain; charset=utf-8"}


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request. ``headers`` must answer ``get`` for lower-case names (a dict with
    lower-cased keys, or a case-insensitive mapping); ``query`` holds first values."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    received_at: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(_TEXT))


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """A body whose signature checked out, to deliver before answering, with the
    organizations it may carry items of."""

    body: bytes
    summary: Summary
    received_at: float
    verdict: Verdict = ANY


class Credentials(Protocol):
    """Where verify tokens and app secrets come from besides the settings: the
    organizations table (``OrgCredentials``), or nothing (``NO_CREDENTIALS``)."""

    def verify_tokens(self) -> Collection[str]: ...

    def app_secrets(
        self, phone_number_ids: Iterable[str], waba_ids: Iterable[str]
    ) -> Mapping[str, frozenset[int]]:
        """The app secrets of the organizations with these ids, each with *every*
        organization holding it (organizations of one Meta app share its secret)."""
        ...


class _NoCredentials:
    def verify_tokens(self) -> Collection[str]:
        return ()

    def app_secrets(
        self, phone_number_ids: Iterable[str], waba_ids: Iterable[str]
    ) -> Mapping[str, frozenset[int]]:
        return {}


NO_CREDENTIALS: Credentials = _NoCredentials()


def _text(status: int, text: str, **headers: str) -> Response:
    return Response(status, text.encode(), {**_TEXT, **headers})


OK = _text(200, "EVENT_RECEIVED")
UNAVAILABLE = _text(503, "not stored, retry later", **{"retry-after": "5"})


class Receiver:
    """The decisions of the webhook endpoint. ``webhook_paths`` None means every path
    other than the health and readiness paths is the webhook (API Gateway routes for us);
    ``ready`` answers the readiness probe."""

    def __init__(
        self,
        *,
        verify_tokens: Iterable[str] = (),
        app_secrets: Iterable[str] = (),
        credentials: Credentials = NO_CREDENTIALS,
        max_body_bytes: int = 3 * 1024 * 1024 + 64 * 1024,
        webhook_paths: Collection[str] | None = (WEBHOOK_PATH,),
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.verify_tokens = tuple(t for t in verify_tokens if t)
        self.app_secrets = tuple(s for s in app_secrets if s)
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes
        self.webhook_paths = None if webhook_paths is None else frozenset(webhook_paths)
        self.ready = ready

    def is_webhook(self, path: str) -> bool:
        if path in (HEALTH_PATH, READY_PATH):
            return False
        return self.webhook_paths is None or path.rstrip("/") in self.webhook_paths

    def handle(self, req: Request, *, quiet: bool = False) -> Response | Accepted:
        """``quiet``: a 403 is not logged, because the caller will reload the credentials
        and ask again; the second answer is the one logged."""
        method = req.method.upper()
        if req.path in (HEALTH_PATH, READY_PATH) and method in ("GET", "HEAD"):
            if req.path == HEALTH_PATH or self.ready():
                return _text(200, "ok")
            return _text(503, "not ready")
        if not self.is_webhook(req.path):
            return _text(404, "not found")
        if method == "GET":
            return self.handshake(req.query, quiet=quiet)
        if method == "POST":
            return self.check_post(req, quiet=quiet)
        return _text(405, "method not allowed", allow="GET, POST")

    def handshake(self, query: Mapping[str, str], *, quiet: bool = False) -> Response:
        tokens = (*self.verify_tokens, *self.credentials.verify_tokens())
        challenge = verify_subscription(query, tokens)
        if challenge is None:
            if not quiet:
                log.warning("handshake_refused mode=%s", _clean(query.get("hub.mode")))
            return _text(403, "verification failed")
        log.info("handshake_accepted")
        return _text(200, challenge)

    def too_large(self, length: int) -> Response | None:
        """413 when a body of ``length`` bytes is over the limit: adapters call this with
        Content-Length before reading the body, then again as they read it."""
        if length > self.max_body_bytes:
            log.warning("body_too_large bytes=%d limit=%d", length, self.max_body_bytes)
            return _text(413, f"body over {self.max_body_bytes} bytes")
        return None

    def check_post(self, req: Request, *, quiet: bool = False) -> Response | Accepted:
        refused = self.too_large(len(req.body))
        if refused is not None:
            return refused
        header = req.headers.get(SIGNATURE_HEADER)
        if not header:
            log.warning("signature_missing bytes=%d", len(req.body))
            return _text(401, "X-Hub-Signature-256 required")
        summary = summarize(req.body)
        candidates = self.credentials.app_secrets(summary.phone_number_ids, summary.waba_ids)
        verdict = self.verdict(req.body, header, candidates)
        if verdict is None:
            if not quiet:
                log.warning(
                    "signature_mismatch sha256=%s bytes=%d secrets_tried=%d waba_ids=%s",
                    summary.sha256, summary.size, len(self.app_secrets) + len(candidates),
                    ",".join(summary.waba_ids),
                )  # fmt: skip
            return _text(403, "signature does not match")
        return Accepted(req.body, summary, req.received_at, verdict)

    def verdict(
        self, body: bytes, header: str, candidates: Mapping[str, frozenset[int]]
    ) -> Verdict | None:
        """Whose items ``body`` may carry, or None when no secret verifies its signature:
        ``ANY`` for a configured (deployment-wide) secret, else the holders of every
        organization secret in ``candidates`` that verifies.

        Every secret is checked (no early exit), so the time taken says nothing about which
        one matched."""
        deployment_wide = verify_signature(body, header, self.app_secrets)
        organizations: set[int] = set()
        for secret, holders in candidates.items():
            if verify_signature(body, header, (secret,)):
                organizations |= holders
        if deployment_wide:
            return ANY
        if organizations:
            return Verdict.of(organizations)
        return None

    def delivered(self, accepted: Accepted, where: str) -> Response:
        s = accepted.summary
        if s.problem is not None:
            log.warning("kept_not_a_notification sha256=%s to=%s reason=%s",
                        s.sha256, where, s.problem)  # fmt: skip
        else:
            # DEBUG: at thousands a second a line per body is noise; the rows keep the trail.
            log.debug(
                "webhook_accepted sha256=%s bytes=%d to=%s fields=%s messages=%d statuses=%d",
                s.sha256, s.size, where, ",".join(s.fields), s.messages, s.statuses,
            )  # fmt: skip
        return OK

    def not_delivered(self, accepted: Accepted, reason: str) -> Response:
        log.error("webhook_not_delivered sha256=%s bytes=%d reason=%s",
                  accepted.summary.sha256, accepted.summary.size, reason)  # fmt: skip
        return UNAVAILABLE


def _clean(value: str | None) -> str:
    """A query value safe to log: short and printable."""
    if value is None:
        return "-"
    return "".join(c if c.isprintable() else "?" for c in value[:32])
