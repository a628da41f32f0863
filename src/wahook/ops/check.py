"""``wahook check URL``: is a deployed receiver (and, given them, its database and queue)
doing its job? Each step is timed; each failure names its likely cause and its fix.

From the URL alone: the endpoint is reachable at that path, the verify token matches
(Meta's handshake), unsigned POSTs are refused, signed ones are accepted and handed on
(a 503 means the receiver could not queue them). With ``--dsn``: the database answers,
the test webhook was stored (in the quarantine, as test traffic), no organization uses the
reserved test ids, and no real traffic waits for a missing organization. With
``--queue-url``: the dead-letter queue is empty and the oldest message is not too old.

The sample is a text message from the reserved test phone number id
(``wahook.receiver.samples.TEST_PHONE_NUMBER_ID``) with a fresh wamid, so it never lands in
an organization's tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import Any

from wahook.errors import ConfigError
from wahook.ops import http, rows
from wahook.ops.output import EXIT_OK, EXIT_UNHEALTHY, Printer
from wahook.receiver import samples
from wahook.settings import Settings


@dataclasses.dataclass(frozen=True, slots=True)
class Issue:
    title: str
    cause: str
    fix: str


# The original design's "Common issues", and what this check adds to them.
ISSUES = {
    "unreachable": Issue(
        "endpoint unreachable",
        "no HTTP answer: wrong host, the stack is not deployed, DNS, or a firewall",
        "check the URL against the stack's WebhookUrl output; `curl -v URL` shows where it stops",
    ),
    "not_found": Issue(
        "wrong path",
        "the URL answers, but not as the webhook route (404/405)",
        "use the full webhook URL, ending in /webhook (the stack's WebhookUrl output)",
    ),
    "verification_failed": Issue(
        "webhook verification failed",
        "the verify token sent is not the deployment's (WEBHOOK_VERIFY_TOKEN) nor an active "
        "organization's",
        "set the same WEBHOOK_VERIFY_TOKEN here, in the deployment, and in Meta's app dashboard",
    ),
    "challenge": Issue(
        "challenge not echoed",
        "something in front of the receiver (proxy, API mapping) rewrites the answer",
        "route GET /webhook straight to the receiver; it must answer hub.challenge as text",
    ),
    "unsigned_accepted": Issue(
        "unsigned POST accepted",
        "the endpoint stores bodies without checking X-Hub-Signature-256: anyone can post",
        "point Meta at wahook's receiver (Lambda or `wahook serve`), not at a bypass",
    ),
    "signature_refused": Issue(
        "signed POST refused",
        "the app secret used here (WEBHOOK_SECRET) is not the deployment's: Meta's real "
        "POSTs are refused the same way if Meta's app secret is not configured",
        "set WEBHOOK_SECRET in the deployment to the Meta app's secret (several: comma-"
        "separated) and run the check with the same value",
    ),
    "not_delivered": Issue(
        "messages not queued",
        "the receiver verified the POST but could not hand it on (503): the queue URL, its "
        "IAM permission (sqs:SendMessage) or the network to SQS",
        "`wahook logs receiver --filter webhook_not_delivered`; check WAHOOK_QUEUE_URL and "
        "the receiver's role",
    ),
    "receiver_error": Issue(
        "receiver error",
        "the receiver failed (5xx): a crash at start (configuration, package) or a timeout",
        "`wahook logs receiver --filter ERROR`",
    ),
    "database_timeout": Issue(
        "database connection timeout",
        "the database cannot be reached with this DSN from here (host, port, credentials); "
        "for the Lambdas: the VPC subnets and security groups",
        "check the DSN; on AWS let the processor's security group reach RDS's port",
    ),
    "test_organization": Issue(
        "reserved test ids in use",
        "an organization has the test phone number id or WABA id, so test webhooks land in "
        "its tables",
        "give that organization its real ids; the test ids are reserved",
    ),
    "messages_stuck": Issue(
        "messages stuck",
        "the test webhook was accepted but not stored in time: the processor is failing, "
        "not running, or far behind",
        "`wahook queue status`, `wahook logs processor --filter ERROR`; once fixed, "
        "`wahook queue redrive` moves dead-letter messages back",
    ),
    "organization_not_found": Issue(
        "organization not found",
        "webhooks arrive for a phone number id / WABA id that no organization has",
        "`wahook org add --name NAME --phone-number-id ID --waba-id WABA`: the waiting items are "
        "then applied",
    ),
}


@dataclasses.dataclass(slots=True)
class Step:
    name: str
    ok: bool | None  # None: skipped or a warning that does not fail the check
    detail: str
    seconds: float | None = None
    issue: str | None = None


@dataclasses.dataclass
class CheckPlan:
    url: str
    verify_token: str
    app_secret: str
    dsn: str | None = None
    queue_url: str | None = None
    dlq_url: str | None = None
    phone_number_id: str | None = None
    wait: float = 30.0
    max_age: float = 300.0
    timeout: float = 30.0


def sample_body() -> tuple[bytes, str]:
    """A realistic text message from the reserved test ids, with a fresh wamid."""
    wamid = f"wamid.WAHOOKCHECK{int(time.time())}{secrets.token_hex(6).upper()}"
    message = {**samples.text_message(0, text="wahook check"), "id": wamid}
    change = samples.change([message], phone_number_id=samples.TEST_PHONE_NUMBER_ID)
    return samples.notification((samples.TEST_WABA_ID, [change])), wamid


def _http_issue(status: int | None) -> str:
    if status is None:
        return "unreachable"
    if status in (404, 405):
        return "not_found"
    if status == 503:
        return "not_delivered"
    return "receiver_error"


def http_steps(plan: CheckPlan) -> tuple[list[Step], str | None]:
    """The three requests; returns the steps and the sample's wamid if it was accepted."""
    steps = []
    answer, challenge = http.handshake(plan.url, plan.verify_token, plan.timeout)
    if answer.status == 200 and answer.body.strip() == challenge:
        steps.append(Step("handshake", True, "200, challenge echoed", answer.seconds))
    elif answer.status == 200:
        steps.append(
            Step("handshake", False, "200 without the challenge", answer.seconds, "challenge")
        )
    elif answer.status == 403:
        steps.append(Step("handshake", False, "403 refused", answer.seconds, "verification_failed"))
    else:
        detail = answer.error or f"{answer.status} {answer.body[:80]}"
        steps.append(Step("handshake", False, detail, answer.seconds, _http_issue(answer.status)))
        if answer.status in (None, 404, 405):
            return steps, None  # nothing or something else answers: the POSTs would too

    body, wamid = sample_body()
    answer = http.post(plan.url, body, None, plan.timeout)
    if answer.status in (401, 403):
        steps.append(Step("unsigned POST", True, f"{answer.status} refused", answer.seconds))
    elif answer.status is not None and 200 <= answer.status < 300:
        steps.append(
            Step(
                "unsigned POST",
                False,
                f"{answer.status} accepted",
                answer.seconds,
                "unsigned_accepted",
            )
        )
    else:
        detail = answer.error or f"{answer.status} {answer.body[:80]}"
        steps.append(
            Step("unsigned POST", False, detail, answer.seconds, _http_issue(answer.status))
        )

    answer = http.post(plan.url, body, plan.app_secret, plan.timeout)
    if answer.status == 200:
        steps.append(
            Step("signed POST", True, f"200 {answer.body.strip()[:40]}  {wamid}", answer.seconds)
        )
        return steps, wamid
    if answer.status in (401, 403):
        steps.append(
            Step(
                "signed POST",
                False,
                f"{answer.status} refused",
                answer.seconds,
                "signature_refused",
            )
        )
    else:
        detail = answer.error or f"{answer.status} {answer.body[:80]}"
        steps.append(Step("signed POST", False, detail, answer.seconds, _http_issue(answer.status)))
    return steps, None


async def database_steps(
    plan: CheckPlan, wamid: str | None, progress: Callable[[str], None]
) -> list[Step]:
    import asyncpg

    assert plan.dsn is not None
    start = time.perf_counter()
    try:
        conn = await asyncpg.connect(plan.dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return [Step("database", False, detail, time.perf_counter() - start, "database_timeout")]
    try:
        steps = [Step("database", True, "connected", time.perf_counter() - start)]
        taken = await rows.organizations_with(
            conn, samples.TEST_PHONE_NUMBER_ID, samples.TEST_WABA_ID
        )
        if taken:
            steps.append(
                Step(
                    "test ids", False, f"used by organization(s) {taken}", None, "test_organization"
                )
            )
        if wamid is not None:
            progress(f"waiting up to {plan.wait:g} s for the sample's row ...")
            start = time.perf_counter()
            found = await rows.wait_for_rows(conn, [wamid], plan.wait)
            seconds = time.perf_counter() - start
            quarantined = [r for r in found["quarantine"] if r["wamid"] == wamid]
            if quarantined:
                q = quarantined[0]
                steps.append(
                    Step(
                        "stored",
                        True,
                        f"quarantined as test traffic ({q['kind']}: {q['reason']})",
                        seconds,
                    )
                )
            elif found["webhook_events"]:
                steps.append(Step("stored", True, "stored in webhook_events", seconds))
            else:
                steps.append(
                    Step(
                        "stored", False, f"no row after {plan.wait:g} s", seconds, "messages_stuck"
                    )
                )
        if plan.phone_number_id:
            active = await rows.active_organization(conn, plan.phone_number_id)
            if active:
                steps.append(Step("organization", True, f"{plan.phone_number_id} is active"))
            else:
                state = "inactive" if active is False else "missing"
                steps.append(
                    Step(
                        "organization",
                        False,
                        f"{plan.phone_number_id} {state}",
                        None,
                        "organization_not_found",
                    )
                )
        waiting = await rows.unrouted(conn, samples.TEST_PHONE_NUMBER_ID)
        if waiting:
            listed = ", ".join(f"{p or '-'}/{w or '-'}: {n}" for p, w, n in waiting)
            steps.append(
                Step(
                    "unrouted",
                    None,
                    f"items wait for an organization (phone number id/WABA id: items) {listed}",
                    None,
                    "organization_not_found",
                )
            )
        return steps
    finally:
        await conn.close()


async def queue_steps(settings: Settings, plan: CheckPlan) -> list[Step]:
    from wahook.ops.aws import describe, is_aws_error
    from wahook.ops.queue import queue_status

    assert plan.queue_url is not None
    start = time.perf_counter()
    try:
        status = await queue_status(settings, plan.queue_url, plan.dlq_url)
    except Exception as exc:
        if not is_aws_error(exc):
            raise
        return [Step("queue", False, describe(exc), time.perf_counter() - start, "unreachable")]
    seconds = time.perf_counter() - start
    q = status.queue
    age = "unknown" if q.oldest_age is None else f"{q.oldest_age:g} s"
    dead = status.dead_letter
    detail = f"depth {q.visible}, in flight {q.in_flight}, oldest {age}, dead-letter " + (
        str(dead.visible + dead.in_flight) if dead else "none"
    )
    problems = status.problems(plan.max_age)
    if problems:
        return [Step("queue", False, f"{detail}: {'; '.join(problems)}", seconds, "messages_stuck")]
    return [Step("queue", True, detail, seconds)]


async def run_check(
    settings: Settings, plan: CheckPlan, progress: Callable[[str], None] = lambda _: None
) -> list[Step]:
    steps, wamid = await asyncio.to_thread(http_steps, plan)
    if plan.dsn:
        steps += await database_steps(plan, wamid, progress)
    else:
        steps.append(
            Step(
                "database",
                None,
                "not checked: give --dsn to see the sample "
                "stored, the organizations, and the database's reachability",
            )
        )
    if plan.queue_url:
        steps += await queue_steps(settings, plan)
    else:
        steps.append(
            Step(
                "queue",
                None,
                "not checked: give --queue-url for depth, "
                "dead-letter depth and the oldest message's age",
            )
        )
    return steps


def report(steps: list[Step], printer: Printer, url: str) -> int:
    printer.line(f"wahook check {url}")
    for step in steps:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[step.ok]
        took = f"  ({step.seconds * 1000:.0f} ms)" if step.seconds is not None else ""
        printer.line(f"  {mark}  {step.name:<14} {step.detail}{took}")
        if step.issue is not None:
            issue = ISSUES[step.issue]
            printer.line(f"        {issue.title}: {issue.cause}")
            printer.line(f"        fix: {issue.fix}")
    failed = sum(step.ok is False for step in steps)
    passed = sum(step.ok is True for step in steps)
    printer.line(f"check: {passed} passed, {failed} failed")
    return EXIT_UNHEALTHY if failed else EXIT_OK


def plan_from(settings: Settings, url: str, **options: Any) -> CheckPlan:
    from wahook.ops.output import app_secret, verify_token

    token, secret = verify_token(settings), app_secret(settings)
    if not token or not secret:
        raise ConfigError(
            "set WEBHOOK_VERIFY_TOKEN and WEBHOOK_SECRET to the deployment's verify token and "
            "app secret (or run in the directory of a local `wahook serve`)"
        )
    return CheckPlan(url=url, verify_token=token, app_secret=secret, **options)
