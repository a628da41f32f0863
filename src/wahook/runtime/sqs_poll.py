"""The SQS long-poll source (``wahook worker``), on aiobotocore.

- ``concurrency`` readers each run ``ReceiveMessage`` (10 messages, 20 s long poll, all
  attributes); cancelling one (at stop) abandons its HTTP request at once.
- every received message is *leased* until settled: the ``heartbeat`` side task extends the
  visibility of leases older than half the queue's ``VisibilityTimeout`` so a slow batch is
  never redelivered while it is being written.
- ``settle`` deletes what committed with ``DeleteMessageBatch`` (receipt handles
  de-duplicated, 10 per call, entries that failed retried once); failed messages are left
  to the visibility timeout, so SQS redelivers them and eventually dead-letters them.
- leaving the context sets the visibility of every unsettled lease back to 0, so another
  worker takes them at once.
- ``drain=True`` (``wahook replay --dead-letter-queue``): the source ends at the first
  empty long poll instead of waiting for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Collection, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import structlog

from wahook.runtime.source import BaseSource, Message
from wahook.runtime.sqs_message import to_message

log = structlog.get_logger("wahook.runtime.sqs")

MAX_PER_CALL = 10
RECEIVE_BACKOFF_CAP = 20.0


@dataclasses.dataclass(slots=True)
class _Lease:
    receipt: str
    extended_at: float


def _chunks(items: Sequence[Any], size: int = MAX_PER_CALL) -> Iterable[Sequence[Any]]:
    return (items[i : i + size] for i in range(0, len(items), size))


class SqsSource(BaseSource):
    def __init__(
        self,
        queue_url: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        receivers: int = 4,
        wait_seconds: int = 20,
        client: Any = None,
        drain: bool = False,
    ) -> None:
        self.queue_url = queue_url
        self.region = region
        self.endpoint_url = endpoint_url
        self.concurrency = receivers
        self.wait_seconds = wait_seconds
        self.visibility_timeout = 30
        self.client = client
        self._leases: dict[str, _Lease] = {}
        # ReceiveMessage calls under way. A long poll stays open at SQS when its caller is
        # cancelled (a stop): the messages it then takes would be invisible to everyone
        # for the visibility timeout. So a call is its own task, never cancelled; what it
        # brings is leased (and released on exit) whether or not its caller still waits.
        self._receiving: set[asyncio.Task[list[Message] | None]] = set()
        self._receive_failures = 0
        self.drain = drain
        self._drained = False
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        if self.client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            from wahook.settings import aws_client_args, aws_endpoint_url

            config = AioConfig(max_pool_connections=self.concurrency + 2 * MAX_PER_CALL)
            self.client = await self._stack.enter_async_context(
                get_session().create_client(
                    "sqs",
                    **aws_client_args(
                        self.region, aws_endpoint_url(self.endpoint_url, self.queue_url)
                    ),
                    config=config,
                )
            )
        response = await self.client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"]
        )
        self.visibility_timeout = int(response["Attributes"]["VisibilityTimeout"])
        log.info(
            "sqs_source_opened",
            queue_url=self.queue_url,
            visibility_timeout=self.visibility_timeout,
            receivers=self.concurrency,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._receiving:
            # Long polls still open: their messages are leased when they answer, then
            # released with the rest (they answer within wait_seconds; usually already).
            await asyncio.wait(set(self._receiving), timeout=self.wait_seconds + 1)
        unsettled = list(self._leases)
        try:
            if unsettled:
                await self.release(unsettled)
        except Exception as exc:
            # They come back after their visibility timeout instead of at once.
            log.warning("release_failed", error=repr(exc), count=len(unsettled))
        finally:
            await self._stack.aclose()

    @property
    def in_flight(self) -> int:
        """Messages received and not yet settled or released."""
        return len(self._leases)

    async def next_batch(self) -> Sequence[Message] | None:
        if self._drained:
            return None
        task = asyncio.create_task(self._receive(), name="wahook-sqs-receive")
        self._receiving.add(task)
        task.add_done_callback(self._receiving.discard)
        # Cancelling this call leaves the receive running (see __init__).
        return await asyncio.shield(task)

    async def _receive(self) -> list[Message] | None:
        try:
            response = await self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=MAX_PER_CALL,
                WaitTimeSeconds=self.wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except Exception as exc:
            # botocore has already retried; keep polling (with a pause) rather than die.
            self._receive_failures += 1
            delay = min(RECEIVE_BACKOFF_CAP, 0.5 * 2 ** min(self._receive_failures, 6))
            log.warning("receive_failed", error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)
            return []
        self._receive_failures = 0
        if self.drain and not response.get("Messages"):
            self._drained = True  # drain mode: the first empty long poll ends the source
            return None
        now = time.monotonic()
        batch = []
        for m in response.get("Messages", ()):
            self._leases[m["MessageId"]] = _Lease(m["ReceiptHandle"], now)
            batch.append(
                to_message(
                    m["MessageId"],
                    m.get("Body", ""),
                    m.get("Attributes", {}),
                    m.get("MessageAttributes", {}),
                )
            )
        return batch

    async def settle(self, batch: Sequence[Message], failed: Collection[str]) -> None:
        receipts: dict[str, str] = {}
        for message in batch:
            lease = self._leases.pop(message.id, None)
            if lease is not None and message.id not in failed:
                receipts.setdefault(lease.receipt, message.id)
        if receipts:
            await self._batch_call("delete_message_batch", list(receipts), {}, "delete_failed")

    async def release(self, message_ids: Iterable[str]) -> None:
        """Visibility back to 0 for these leases: another receiver may take them now."""
        receipts = [lease.receipt for i in message_ids if (lease := self._leases.pop(i, None))]
        if receipts:
            log.info("messages_released", count=len(receipts))
            await self._batch_call(
                "change_message_visibility_batch",
                receipts,
                {"VisibilityTimeout": 0},
                "release_failed",
            )

    def side_tasks(self) -> Mapping[str, Coroutine[Any, Any, None]]:
        if self.visibility_timeout <= 0:
            return {}
        return {"heartbeat": self._heartbeat()}

    async def _heartbeat(self) -> None:
        half = self.visibility_timeout / 2
        while True:
            await asyncio.sleep(max(0.2, self.visibility_timeout / 4))
            now = time.monotonic()
            due = [
                (message_id, lease)
                for message_id, lease in self._leases.items()
                if now - lease.extended_at >= half
            ]
            if not due:
                continue
            try:
                failed = await self._batch_call(
                    "change_message_visibility_batch",
                    [lease.receipt for _, lease in due],
                    {"VisibilityTimeout": self.visibility_timeout},
                    "heartbeat_failed",
                )
            except Exception as exc:
                # Tried again on the next beat; a lease not extended in time is redelivered
                # and written twice, which the sink makes harmless.
                log.warning("heartbeat_failed", error=repr(exc), count=len(due))
                continue
            for _, lease in due:
                lease.extended_at = now
            log.debug("visibility_extended", count=len(due) - len(failed))

    async def _batch_call(
        self, operation: str, receipts: list[str], extra: dict[str, Any], failure_event: str
    ) -> set[str]:
        """Run a 10-entries-per-call batch operation over ``receipts``; entries that fail for
        a reason other than the caller's are tried once more. Returns the receipts that
        still failed (already logged)."""
        call = getattr(self.client, operation)

        async def one(chunk: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
            entries = [{"Id": str(i), "ReceiptHandle": r, **extra} for i, r in enumerate(chunk)]
            response = await call(QueueUrl=self.queue_url, Entries=entries)
            return [(chunk[int(f["Id"])], f) for f in response.get("Failed", ())]

        still: set[str] = set()
        results = await asyncio.gather(*(one(c) for c in _chunks(receipts)))
        retry = [r for result in results for r, f in result if not f.get("SenderFault")]
        for result in results:
            for receipt, f in result:
                if f.get("SenderFault"):
                    still.add(receipt)
                    log.warning(failure_event, code=f.get("Code"), reason=f.get("Message"))
        if retry:
            for result in await asyncio.gather(*(one(c) for c in _chunks(retry))):
                for receipt, f in result:
                    still.add(receipt)
                    log.warning(failure_event, code=f.get("Code"), reason=f.get("Message"))
        return still
