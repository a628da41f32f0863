"""The SAM template: cfn-lint clean, translated offline, and holding what a trivial template
would not (queue settings, batching, concurrency, secrets, logs, alarms, exact IAM)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file

from tests.deploy.cfn import SECRET_PARAMETERS, Evaluated, sam, translated
from wahook.deploy import template
from wahook.runtime.lambda_sqs import emf_line
from wahook.runtime.stats import Stats

SM = "arn:aws:secretsmanager:us-east-1:123456789012:secret:wahook/{}-AbCdEf"
SECRETS_MANAGER = {p: SM.format(p) for p in SECRET_PARAMETERS}
SSM = {p: f"/wahook/prod/{p}" for p in SECRET_PARAMETERS}
FOURTEEN_DAYS = 14 * 24 * 3600
META_RETRIES_FOR = 7 * 24 * 3600
LAMBDA_INVOKE_PAYLOAD = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated()


def test_template_ships_as_package_data() -> None:
    assert template().is_file()
    assert sam()["Transform"] == "AWS::Serverless-2016-10-31"


def test_cfn_lint_finds_nothing() -> None:
    matches = lint_file(Path(str(template())))
    assert [str(m) for m in matches] == []


def test_secret_parameters_are_noecho_without_default(cfn: dict[str, Any]) -> None:
    params = cfn["Parameters"]
    for name in SECRET_PARAMETERS:
        assert params[name]["NoEcho"] is True
        assert "Default" not in params[name]
    # nothing else hides a value, so nothing else may be a secret
    assert {n for n, p in params.items() if p.get("NoEcho")} == set(SECRET_PARAMETERS)


def test_queue_and_dead_letter_queue(cfn: dict[str, Any]) -> None:
    stack = Evaluated(cfn, **SECRETS_MANAGER)
    queues = stack.resources("AWS::SQS::Queue")
    assert set(queues) == {"Queue", "DeadLetterQueue"}
    queue, dlq = queues["Queue"]["Properties"], queues["DeadLetterQueue"]["Properties"]
    # 14 days, SQS's maximum, outlives Meta's 7 days of retries; a dead letter keeps its
    # first enqueue time, so the DLQ keeps messages at least as long.
    assert queue["MessageRetentionPeriod"] == dlq["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert FOURTEEN_DAYS >= META_RETRIES_FOR
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 10,
    }
    max_receive = cfn["Parameters"]["MaxReceiveCount"]
    assert max_receive["MinValue"] >= 5  # AWS's advice for Lambda event sources
    assert max_receive["Default"] >= 5
    assert queue["SqsManagedSseEnabled"] is dlq["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("timeout", ["30", "60", "120", "300"])
def test_visibility_timeout_is_six_processor_timeouts_plus_the_window(
    cfn: dict[str, Any], timeout: str
) -> None:
    assert timeout in cfn["Parameters"]["ProcessorTimeout"]["AllowedValues"]
    stack = Evaluated(cfn, ProcessorTimeout=timeout, **SECRETS_MANAGER)
    visibility = stack.resources("AWS::SQS::Queue")["Queue"]["Properties"]["VisibilityTimeout"]
    function = stack.resources("AWS::Lambda::Function")["ProcessorFunction"]["Properties"]
    window_max = cfn["Parameters"]["BatchingWindowSeconds"]["MaxValue"]
    assert int(function["Timeout"]) == int(timeout)
    assert visibility >= 6 * int(function["Timeout"]) + window_max


def test_event_source_mapping(cfn: dict[str, Any]) -> None:
    stack = Evaluated(cfn, ProcessorMaxConcurrency="7", **SECRETS_MANAGER)
    [mapping] = stack.resources("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": "7"}
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "ProcessorFunction"}
    # ~5.25 events per message (the benchmarks' traffic): ~5,000 events per batch, where
    # the sink's throughput levels off; >10 records need a window of at least 1 s.
    assert props["BatchSize"] == 1000
    assert props["MaximumBatchingWindowInSeconds"] == 2
    assert cfn["Parameters"]["BatchingWindowSeconds"]["MinValue"] >= 1
    # Typical records (~1.2 KB body + ~1.8 KB of metadata, measured in the stack test) fit
    # the invocation payload cap.
    assert props["BatchSize"] * 3 * 1024 <= LAMBDA_INVOKE_PAYLOAD


def test_concurrency_times_pool_stays_under_a_small_databases_connections(
    cfn: dict[str, Any],
) -> None:
    params = cfn["Parameters"]
    stack = Evaluated(cfn, **SECRETS_MANAGER)
    env = stack.resources("AWS::Lambda::Function")["ProcessorFunction"]["Properties"]
    assert (
        env["Environment"]["Variables"]["WAHOOK_POOL_MAX"] == params["DatabasePoolSize"]["Default"]
    )
    # db.t4g.micro allows about 80 connections: the defaults take 10 (+1 migration).
    assert params["ProcessorMaxConcurrency"]["Default"] * params["DatabasePoolSize"]["Default"] < 80
    assert params["ProcessorMaxConcurrency"]["MinValue"] == 2  # Lambda's own minimum
    assert "max_connections" in params["ProcessorMaxConcurrency"]["Description"]


def test_functions_handlers_and_their_log_groups(cfn: dict[str, Any]) -> None:
    for environment, days in (("development", 14), ("production", 90)):
        stack = Evaluated(cfn, Environment=environment, Architecture="arm64", **SECRETS_MANAGER)
        functions = stack.resources("AWS::Lambda::Function")
        assert {n: f["Properties"]["Handler"] for n, f in functions.items()} == {
            "ReceiverFunction": "wahook.receiver.lambda_handler.handler",
            "ProcessorFunction": "wahook.runtime.lambda_sqs.handler",
            "MigrateFunction": "wahook.deploy.migrate_resource.handler",
        }
        assert {f["Properties"]["Code"]["S3Key"] for f in functions.values()} == {
            "receiver.zip",
            "processor.zip",
        }
        assert {f["Properties"]["Architectures"][0] for f in functions.values()} == {"arm64"}
        names = {f["Properties"]["FunctionName"]["Fn::Sub"] for f in functions.values()}
        groups = stack.resources("AWS::Logs::LogGroup").values()
        assert {g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups} == {
            f"/aws/lambda/{n}" for n in names
        }
        assert {g["Properties"]["RetentionInDays"] for g in groups} == {days}


def test_no_secret_value_in_any_function_environment(cfn: dict[str, Any]) -> None:
    for given, suffix in ((SECRETS_MANAGER, "_ARN"), (SSM, "_SSM")):
        store = "ssm" if suffix == "_SSM" else "secretsmanager"
        stack = Evaluated(cfn, SecretStore=store, **given)
        env = {
            n: f["Properties"]["Environment"]["Variables"]
            for n, f in stack.resources("AWS::Lambda::Function").items()
        }
        refs = {n: {k for k in v if k.endswith(suffix)} for n, v in env.items()}
        assert refs == {
            "ReceiverFunction": {f"WEBHOOK_SECRET{suffix}", f"WEBHOOK_VERIFY_TOKEN{suffix}"},
            "ProcessorFunction": {f"WAHOOK_DSN_SECRET{suffix}".replace("_SECRET_SSM", "_SSM")},
            "MigrateFunction": {f"WAHOOK_DSN_SECRET{suffix}".replace("_SECRET_SSM", "_SSM")},
        }
        plain = {"WAHOOK_DSN", "WEBHOOK_SECRET", "WEBHOOK_VERIFY_TOKEN", "DB_PASSWORD"}
        assert all(not (plain & set(v)) for v in env.values())


def statements(stack: Evaluated, role: str) -> dict[str, tuple[frozenset[str], Any]]:
    [policy] = stack.resources("AWS::IAM::Role")[role]["Properties"]["Policies"]
    out = {}
    for s in policy["PolicyDocument"]["Statement"]:
        assert s["Effect"] == "Allow"
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        out[s["Sid"]] = (frozenset(actions), s["Resource"])
    return out


def ssm_arn(name: str) -> dict[str, str]:
    return {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
        "${" + name + "}"
    }


VPC_ACTIONS = frozenset(
    {
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)
LOGS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})


def test_iam_is_exact_actions_on_exact_resources(cfn: dict[str, Any]) -> None:
    stack = Evaluated(cfn, **SECRETS_MANAGER)
    assert statements(stack, "ReceiverRole") == {
        "Logs": (LOGS, {"Fn::GetAtt": ["ReceiverLogGroup", "Arn"]}),
        "Forward": (frozenset({"sqs:SendMessage"}), {"Fn::GetAtt": ["Queue", "Arn"]}),
        "Secrets": (
            frozenset({"secretsmanager:GetSecretValue"}),
            [SECRETS_MANAGER["AppSecret"], SECRETS_MANAGER["VerifyTokenSecret"]],
        ),
    }
    assert statements(stack, "ProcessorRole") == {
        "Logs": (LOGS, {"Fn::GetAtt": ["ProcessorLogGroup", "Arn"]}),
        "Consume": (
            frozenset({"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}),
            {"Fn::GetAtt": ["Queue", "Arn"]},
        ),
        "Secrets": (
            frozenset({"secretsmanager:GetSecretValue"}),
            SECRETS_MANAGER["DatabaseSecret"],
        ),
    }
    assert statements(stack, "MigrateRole") == {
        "Logs": (LOGS, {"Fn::GetAtt": ["MigrateLogGroup", "Arn"]}),
        "Secrets": (
            frozenset({"secretsmanager:GetSecretValue"}),
            SECRETS_MANAGER["DatabaseSecret"],
        ),
    }
    for role in stack.resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]


def test_iam_with_ssm_a_kms_key_and_a_vpc(cfn: dict[str, Any]) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    stack = Evaluated(
        cfn,
        SecretStore="ssm",
        SecretsKmsKeyArn=key,
        SubnetIds="subnet-1,subnet-2",
        SecurityGroupIds="sg-1",
        **SSM,
    )
    receiver = statements(stack, "ReceiverRole")
    assert receiver["Secrets"] == (
        frozenset({"ssm:GetParameter"}),
        [ssm_arn("AppSecret"), ssm_arn("VerifyTokenSecret")],
    )
    assert receiver["SecretsKey"] == (frozenset({"kms:Decrypt"}), key)
    assert "Vpc" not in receiver  # the receiver never talks to the database
    for role in ("ProcessorRole", "MigrateRole"):
        got = statements(stack, role)
        assert got["Secrets"] == (frozenset({"ssm:GetParameter"}), ssm_arn("DatabaseSecret"))
        assert got["SecretsKey"] == (frozenset({"kms:Decrypt"}), key)
        assert got["Vpc"] == (VPC_ACTIONS, "*")  # EC2 has no narrower resource for these
    functions = stack.resources("AWS::Lambda::Function")
    for name in ("ProcessorFunction", "MigrateFunction"):
        assert functions[name]["Properties"]["VpcConfig"] == {
            "SubnetIds": ["subnet-1", "subnet-2"],
            "SecurityGroupIds": ["sg-1"],
        }
    assert "VpcConfig" not in functions["ReceiverFunction"]["Properties"]


def alarm_table(stack: Evaluated) -> dict[str, tuple[Any, ...]]:
    return {
        name: (
            a["Properties"]["Namespace"],
            a["Properties"]["MetricName"],
            a["Properties"]["Statistic"],
            a["Properties"]["ComparisonOperator"],
            a["Properties"]["Threshold"],
            tuple(d["Name"] for d in a["Properties"]["Dimensions"]),
        )
        for name, a in stack.resources("AWS::CloudWatch::Alarm").items()
    }


def test_alarms_metrics_and_thresholds(cfn: dict[str, Any]) -> None:
    gt = "GreaterThanThreshold"
    expected = {
        "DeadLetterAlarm": (
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", gt, 0, ("QueueName",),
        ),
        "OldestMessageAlarm": (
            "AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", gt, 300, ("QueueName",),
        ),
        "ProcessorFailuresAlarm": (
            "wahook", "BatchItemFailures", "Sum", gt, 0, ("FunctionName",),
        ),
        "ProcessorErrorsAlarm": ("AWS/Lambda", "Errors", "Sum", gt, 0, ("FunctionName",)),
        "ReceiverApi5xxAlarm": ("AWS/ApiGateway", "5xx", "Sum", gt, 0, ("ApiId", "Stage")),
    }  # fmt: skip
    assert alarm_table(Evaluated(cfn, **SECRETS_MANAGER)) == expected
    with_url = Evaluated(cfn, FunctionUrl="true", OldestMessageAlarmSeconds="900", **SSM)
    assert alarm_table(with_url) == {
        **expected,
        "OldestMessageAlarm": (*expected["OldestMessageAlarm"][:4], "900", ("QueueName",)),
        "ReceiverUrl5xxAlarm": ("AWS/Lambda", "Url5xxCount", "Sum", gt, 0, ("FunctionName",)),
    }
    alarms = Evaluated(cfn, **SECRETS_MANAGER).resources("AWS::CloudWatch::Alarm")
    dims = {n: a["Properties"]["Dimensions"][0]["Value"] for n, a in alarms.items()}
    assert dims["DeadLetterAlarm"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert dims["OldestMessageAlarm"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert dims["ProcessorFailuresAlarm"] == {"Ref": "ProcessorFunction"}
    assert dims["ReceiverApi5xxAlarm"] == {"Ref": "WebhookApi"}


def test_failed_records_alarm_reads_what_the_processor_emits() -> None:
    line = json.loads(emf_line(Stats(), function="wh-processor", records=3, failures=2, seconds=1))
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "wahook"
    assert directive["Dimensions"] == [["FunctionName"]]
    assert {"Name": "BatchItemFailures", "Unit": "Count"} in directive["Metrics"]
    assert (line["FunctionName"], line["BatchItemFailures"]) == ("wh-processor", 2)


def test_dashboard_shows_the_alarmed_metrics(cfn: dict[str, Any]) -> None:
    [dashboard] = Evaluated(cfn, **SECRETS_MANAGER).resources("AWS::CloudWatch::Dashboard").values()
    body, _ = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.load(io.StringIO(body))["widgets"]
    metrics = {tuple(m[:2]) for w in widgets for m in w["properties"].get("metrics", [])}
    for alarm in Evaluated(cfn, FunctionUrl="true", **SSM).resources("AWS::CloudWatch::Alarm"):
        props = cfn["Resources"][alarm]["Properties"]
        assert (props["Namespace"], props["MetricName"]) in metrics


def test_outputs(cfn: dict[str, Any]) -> None:
    assert set(cfn["Outputs"]) == {
        "WebhookUrl",
        "WebhookFunctionUrl",
        "QueueUrl",
        "DeadLetterQueueUrl",
        "DashboardName",
        "ReceiverFunctionName",
        "ProcessorFunctionName",
    }
    assert cfn["Outputs"]["WebhookFunctionUrl"]["Condition"] == "WithFunctionUrl"
    assert cfn["Outputs"]["WebhookUrl"]["Value"]["Fn::Sub"].endswith("/webhook")


def test_schema_migration_only_where_functions_can_run(cfn: dict[str, Any]) -> None:
    on = Evaluated(cfn, **SECRETS_MANAGER)
    off = Evaluated(cfn, MigrateSchema="false", **SECRETS_MANAGER)
    assert {"Custom::WahookSchema", "AWS::Lambda::Version"} <= on.types()
    assert "Custom::WahookSchema" not in off.types()
    assert "MigrateFunction" not in off.resources("AWS::Lambda::Function")
    [schema] = on.resources("Custom::WahookSchema").values()
    # a new function version (new code, new migrations) updates the resource: it reruns
    assert schema["Properties"]["CodeVersion"]["Ref"].startswith("MigrateFunctionVersion")
    processor_env = on.resources("AWS::Lambda::Function")["ProcessorFunction"]["Properties"]
    assert processor_env["Environment"]["Variables"]["WAHOOK_SCHEMA_VERSION"] == {
        "Fn::GetAtt": ["Schema", "SchemaVersion"]
    }
