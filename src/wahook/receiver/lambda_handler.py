"""The receiver as an AWS Lambda function behind API Gateway or a Function URL.

Handler: ``wahook.receiver.lambda_handler.handler``. One handler serves API Gateway REST
APIs (payload format 1.0), HTTP APIs (2.0) and Lambda Function URLs (2.0 as well); bodies
may be base64-encoded and header names come in any case. Verified bodies go to the SQS
queue named by ``WAHOOK_QUEUE_URL`` (or ``SQS_QUEUE_URL``), with the verify token and app
secret(s) from ``WEBHOOK_VERIFY_TOKEN`` and ``WEBHOOK_SECRET``. With ``WAHOOK_DSN`` (or
``DB_HOST`` ...) set too, active organizations' verify tokens and app secrets are accepted
as well: loaded at the first request and again (at most once a second) after a refusal.

The SQS client is created once per container, on the first request, and reused. This
module imports botocore and wahook's pure parts only — no asyncio stack, no asyncpg — so
cold starts stay as short as a plain boto3 function's.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import botocore.config
import botocore.session

from wahook.receiver.core import Accepted, Receiver, Request, Response
from wahook.receiver.forward import ForwardError, Planner, SyncForwarder
from wahook.settings import Settings, aws_client_args, aws_endpoint_url

if TYPE_CHECKING:
    from wahook.receiver.credentials import OrgCredentials

log = logging.getLogger("wahook.receiver")

# Meta waits for the answer: fail fast (503, Meta retries) rather than hang on SQS.
CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
)


def sqs_client(settings: Settings) -> Any:
    """A botocore SQS client for ``settings`` (region, endpoint URL)."""
    session = botocore.session.get_session()
    return session.create_client(
        "sqs",
        **aws_client_args(
            settings.aws_region, aws_endpoint_url(settings.aws_endpoint_url, settings.queue_url)
        ),
        config=CLIENT_CONFIG,
    )


def to_request(event: Mapping[str, Any]) -> Request:
    """An API Gateway (REST v1, HTTP v2) or Function URL event as a ``Request``."""
    if event.get("version") == "2.0" or "rawPath" in event:
        http = event.get("requestContext", {}).get("http", {})
        method = http.get("method", "")
        path = event.get("rawPath") or http.get("path") or "/"
        query = dict(event.get("queryStringParameters") or {})
        if not query and event.get("rawQueryString"):
            query = {k: v[0] for k, v in parse_qs(event["rawQueryString"]).items()}
    else:
        method = event.get("httpMethod", "")
        path = event.get("path") or "/"
        query = dict(event.get("queryStringParameters") or {})
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    raw = event.get("body")
    if raw is None:
        body = b""
    elif event.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    return Request(method, path, query, headers, body)


def to_result(response: Response) -> dict[str, Any]:
    """A ``Response`` as the dict API Gateway and Function URLs expect (both formats)."""
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": response.body.decode("utf-8", "replace"),
        "isBase64Encoded": False,
    }


class LambdaReceiver:
    """The receiver core with a synchronous SQS forwarder."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.receiver = Receiver(
            verify_tokens=(settings.verify_token or "",),
            app_secrets=settings.app_secrets,
            max_body_bytes=settings.max_body_bytes,
            webhook_paths=None,
        )
        self._client = client
        self._forwarder: SyncForwarder | None = None
        self._orgs: OrgCredentials | None = None
        if settings.dsn:
            self._organizations()

    def forwarder(self) -> SyncForwarder:
        if self._forwarder is None:
            if not self.settings.queue_url:
                raise ForwardError("no queue configured: set WAHOOK_QUEUE_URL or SQS_QUEUE_URL")
            client = self._client if self._client is not None else sqs_client(self.settings)
            planner = Planner(
                self.settings.queue_url, max_message_bytes=self.settings.sqs_max_message_bytes
            )
            self._forwarder = SyncForwarder(client, planner)
        return self._forwarder

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            request = to_request(event)
        except (binascii.Error, ValueError, AttributeError, TypeError) as exc:
            log.warning("bad_event error=%s", type(exc).__name__)
            return to_result(Response(400, b"unreadable request"))
        decision = self.receiver.handle(request, quiet=True)
        if isinstance(decision, Response) and decision.status == 403:
            self._reload()
            # Judged again even when nothing was reloaded: this answer is the one logged.
            decision = self.receiver.handle(request)
        if isinstance(decision, Response):
            return to_result(decision)
        return to_result(self._deliver(decision))

    def _organizations(self) -> OrgCredentials | None:
        """With a DSN configured, active organizations' tokens and secrets, loaded on the
        first call (asyncpg and asyncio are imported then, not at cold start)."""
        if self._orgs is None and self.settings.dsn:
            import asyncio

            from wahook.receiver.credentials import OrgCredentials, dsn_loader

            self._orgs = OrgCredentials(dsn_loader(self.settings.dsn))
            asyncio.run(self._orgs.refresh(force=True))
            self.receiver.credentials = self._orgs
        return self._orgs

    def _reload(self) -> bool:
        """After a refusal: reload the organizations (at most once a second)."""
        orgs = self._organizations()
        if orgs is None:
            return False
        import asyncio

        return asyncio.run(orgs.refresh())

    def _deliver(self, accepted: Accepted) -> Response:
        try:
            parts = self.forwarder().send(accepted)
        except ForwardError as exc:
            return self.receiver.not_delivered(accepted, str(exc))
        except Exception as exc:  # never let Meta see a 502 with nothing logged
            log.exception("forward_crashed")
            return self.receiver.not_delivered(accepted, type(exc).__name__)
        return self.receiver.delivered(accepted, f"sqs parts={parts}")


_default: LambdaReceiver | None = None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: settings read and the SQS client made on the first call."""
    global _default
    if _default is None:
        from wahook.deploy.secrets import load_secrets

        load_secrets()  # secrets named by ARN/SSM reference -> plain variables, once
        _default = LambdaReceiver(Settings.from_env())
    return _default(event, context)
