"""The translated template created as a stack on moto's server (CloudFormation, over the
wire, on 127.0.0.1), read back, and then driven end to end: a signed POST through the
receiver handler into the stack's queue, the queue's records through the processor
handler into a fresh PostgreSQL database.

moto creates what it supports and warns and skips the rest; the exact sets of created and
skipped resource types are asserted, so a resource that stops being created shows up here.
Its outputs name AWS hostnames (``https://sqs.us-east-1.amazonaws.com/...``): every client
here is given the loopback endpoint explicitly, and the network guard refuses the rest.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import io
import itertools
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import structlog

from tests.deploy.cfn import CODE_BUCKET, Evaluated, translated
from wahook.parse import decode, sign
from wahook.receiver import lambda_handler, samples
from wahook.runtime import lambda_sqs
from wahook.sinks.postgres import add_organization

pytestmark = pytest.mark.slow

TOKEN = "stack-verify-token-7f"
APP_SECRET = "stack-app-secret-9c"
_stacks = itertools.count()

CREATED = {
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventSourceMapping",
    "AWS::CloudWatch::Dashboard",
}
SKIPPED = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::CloudWatch::Alarm"}


@dataclass
class Stack:
    name: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    cfn: Any
    dsn: str


def code_zip() -> bytes:
    # moto stores the code and never runs it (that needs Docker); any zip will do.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "placeholder: the handlers run in the test process")
    return buf.getvalue()


@pytest.fixture
def stack(aws_client: Callable[[str], Any], db_dsn: str, request: pytest.FixtureRequest) -> Stack:
    """A stack whose secrets live in Secrets Manager, or (indirect param "ssm") in SSM."""
    store = getattr(request, "param", "secretsmanager")
    name = f"wh{os.getpid()}x{next(_stacks)}"
    secrets, ssm = aws_client("secretsmanager"), aws_client("ssm")

    def secret(kind: str, value: str) -> str:
        if store == "ssm":
            ssm.put_parameter(Name=f"/{name}/{kind}", Value=value, Type="SecureString")
            return f"/{name}/{kind}"
        return str(secrets.create_secret(Name=f"{name}/{kind}", SecretString=value)["ARN"])

    s3 = aws_client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=CODE_BUCKET)
    for key in ("receiver.zip", "processor.zip"):
        s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=code_zip())
    parameters = {
        "SecretStore": store,
        "DatabaseSecret": secret("dsn", db_dsn),
        "AppSecret": secret("app", APP_SECRET),
        "VerifyTokenSecret": secret("token", TOKEN),
        # moto cannot run the migration function (Docker); tested in test_migrate_resource
        "MigrateSchema": "false",
        # moto has no AWS::Lambda::Url; the output naming it would not resolve
        "FunctionUrl": "false",
    }
    cfn = aws_client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(translated()),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    [described] = cfn.describe_stacks(StackName=name)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    return Stack(name, outputs, parameters, cfn, db_dsn)


def test_created_and_skipped_resource_types_and_settings_read_back(
    stack: Stack, aws_client: Callable[[str], Any]
) -> None:
    summaries = stack.cfn.list_stack_resources(StackName=stack.name)["StackResourceSummaries"]
    # moto lists a skipped resource with neither a logical id nor a type
    created = {s["ResourceType"] for s in summaries if s["LogicalResourceId"]}
    active = Evaluated(translated(), **stack.parameters).types()
    assert created == CREATED
    assert active - created == SKIPPED

    assert set(stack.outputs) == {
        "WebhookUrl",
        "QueueUrl",
        "DeadLetterQueueUrl",
        "DashboardName",
        "ReceiverFunctionName",
        "ProcessorFunctionName",
    }
    assert stack.outputs["QueueUrl"].endswith(f"/{stack.name}-webhooks")
    assert stack.outputs["DashboardName"] == f"{stack.name}-wahook"

    sqs = aws_client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=stack.outputs["QueueUrl"], AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(
        QueueUrl=stack.outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )
    q, d = queue["Attributes"], dlq["Attributes"]
    assert (q["VisibilityTimeout"], q["MessageRetentionPeriod"]) == ("390", "1209600")
    assert d["MessageRetentionPeriod"] == "1209600"
    assert json.loads(q["RedrivePolicy"]) == {
        "deadLetterTargetArn": d["QueueArn"],
        "maxReceiveCount": 10,
    }

    lam = aws_client("lambda")
    processor = lam.get_function_configuration(FunctionName=stack.outputs["ProcessorFunctionName"])
    receiver = lam.get_function_configuration(FunctionName=stack.outputs["ReceiverFunctionName"])
    assert (processor["Handler"], processor["Timeout"], processor["Runtime"]) == (
        "wahook.runtime.lambda_sqs.handler",
        60,
        "python3.12",
    )
    assert (receiver["Handler"], receiver["Timeout"]) == (
        "wahook.receiver.lambda_handler.handler",
        15,
    )
    assert int(q["VisibilityTimeout"]) >= 6 * processor["Timeout"]
    [mapping] = lam.list_event_source_mappings(FunctionName=processor["FunctionName"])[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == q["QueueArn"]
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (1000, 2)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}

    logs = aws_client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{stack.name}-")
    assert {(g["logGroupName"], g["retentionInDays"]) for g in groups["logGroups"]} == {
        (f"/aws/lambda/{stack.name}-receiver", 14),
        (f"/aws/lambda/{stack.name}-processor", 14),
    }

    iam = aws_client("iam")
    role = receiver["Role"].rsplit("/", 1)[1]
    [policy_name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):  # moto 5.2 keeps the CloudFormation policy as a repr
        document = ast.literal_eval(document)
    # moto leaves an AWS::NoValue list item as None where CloudFormation drops it
    statements = [s for s in document["Statement"] if s is not None]
    got = {s["Sid"]: (s["Action"], s["Resource"]) for s in statements}
    assert set(got) == {"Logs", "Forward", "Secrets"}
    assert got["Forward"] == ("sqs:SendMessage", q["QueueArn"])
    assert got["Secrets"] == (
        "secretsmanager:GetSecretValue",
        [stack.parameters["AppSecret"], stack.parameters["VerifyTokenSecret"]],
    )
    log_group = f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{stack.name}-receiver"
    # CloudFormation's LogGroup Arn ends in ":*" (its streams); moto's does not
    assert got["Logs"][0] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert got["Logs"][1].removesuffix(":*") == log_group


# ---- end to end ---------------------------------------------------------------------------


class Context:
    aws_request_id = "req-stack"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def http_event(method: str, body: bytes = b"", query: str = "", **headers: str) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the stack's route sends it."""
    return {
        "version": "2.0",
        "routeKey": f"{method} /webhook",
        "rawPath": "/webhook",
        "rawQueryString": query,
        "headers": {"content-type": "application/json", **headers},
        "requestContext": {"http": {"method": method, "path": "/webhook"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def lambda_records(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Received SQS messages as Lambda's SQS poller hands them to the function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {
                    k: {
                        "stringValue": v["StringValue"],
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": v["DataType"],
                    }
                    for k, v in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


@pytest.fixture
def function_env(
    monkeypatch: pytest.MonkeyPatch, sqs_endpoint: str
) -> Iterator[Callable[[dict[str, str]], None]]:
    """``function_env(variables)``: the process environment as Lambda would set it for a
    function with these variables (plus the loopback endpoint), handlers' caches reset."""
    saved_gc = gc.get_threshold()
    plain = ("WAHOOK_DSN", "WEBHOOK_SECRET", "WEBHOOK_VERIFY_TOKEN", "WAHOOK_QUEUE_URL")
    monkeypatch.setattr(lambda_handler, "_default", None)
    monkeypatch.setattr(lambda_sqs, "_default", None)

    def use(variables: dict[str, str]) -> None:
        for name in plain + tuple(n for n in os.environ if n.startswith(("WAHOOK_", "DB_"))):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, str(value))  # moto keeps a Ref to a Number as an int
        monkeypatch.setenv("AWS_ENDPOINT_URL", sqs_endpoint)

    yield use
    if lambda_sqs._default is not None:
        lambda_sqs._default.close()
    structlog.reset_defaults()  # the processor's cold start configured logging
    gc.unfreeze()
    gc.set_threshold(*saved_gc)


async def _organization(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await add_organization(
            conn, name="Stack", phone_number_id=samples.PHONE_NUMBER_ID, waba_id=samples.WABA_ID
        )
    finally:
        await conn.close()


async def _counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
            for t in ("webhook_events", "incoming_messages", "quarantine")
        }
    finally:
        await conn.close()


@pytest.mark.parametrize("stack", ["secretsmanager", "ssm"], indirect=True)
def test_signed_post_through_the_stack_into_postgres(
    stack: Stack, aws_client: Callable[[str], Any], function_env: Callable[[dict[str, str]], None]
) -> None:
    lam, sqs = aws_client("lambda"), aws_client("sqs")
    receiver = lam.get_function_configuration(FunctionName=stack.outputs["ReceiverFunctionName"])
    processor = lam.get_function_configuration(FunctionName=stack.outputs["ProcessorFunctionName"])
    [mapping] = lam.list_event_source_mappings(FunctionName=processor["FunctionName"])[
        "EventSourceMappings"
    ]
    # moto would run the function in Docker on every send; this test is Lambda's poller.
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    asyncio.run(_organization(stack.dsn))

    # the receiver, with exactly the environment the stack gave it
    function_env(receiver["Environment"]["Variables"])
    query = f"hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=8675309"
    verify = lambda_handler.handler(http_event("GET", query=query), Context())
    assert (verify["statusCode"], verify["body"]) == (200, "8675309")
    body = samples.sample(messages=3, statuses=2)
    unsigned = lambda_handler.handler(http_event("POST", body), Context())
    assert unsigned["statusCode"] == 401  # refused, and nothing queued (below)
    sent = lambda_handler.handler(
        http_event("POST", body, **{"x-hub-signature-256": sign(body, APP_SECRET)}), Context()
    )
    assert sent["statusCode"] == 200

    # the queue the stack made now holds the notification, as the mapping would take it
    got = sqs.receive_message(
        QueueUrl=stack.outputs["QueueUrl"],
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    assert [m["Body"].encode() for m in got] == [body]
    event = lambda_records(got, mapping["EventSourceArn"])
    # the batch-size arithmetic, on a real record: BatchSize of these fit Lambda's 6 MB
    # (1,163-byte body -> 2,952-byte record here: ~1.8 KB of metadata, the template's figure)
    record_bytes = len(json.dumps(event["Records"][0]))
    assert record_bytes - len(body) < 2 * 1024, record_bytes
    assert mapping["BatchSize"] * record_bytes < 6 * 1024 * 1024, record_bytes

    # the processor, with exactly the environment the stack gave it
    function_env(processor["Environment"]["Variables"])
    result = lambda_sqs.handler(event, Context())
    assert result == {"batchItemFailures": []}
    counts = asyncio.run(_counts(stack.dsn))
    assert counts == {
        "webhook_events": len(list(decode(body).events())),
        "incoming_messages": 3,
        "quarantine": 0,
    }
