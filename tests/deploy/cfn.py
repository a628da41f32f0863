"""The SAM template as the tests see it: parsed, translated to CloudFormation offline, and
evaluated for a set of parameter values (conditions, ``Fn::If``, ``Ref`` to parameters,
``Fn::FindInMap``) so assertions read resolved values. Other intrinsics stay as written."""

from __future__ import annotations

import copy
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from wahook.deploy import template

CODE_BUCKET = "wahook-code"
SECRET_PARAMETERS = ("DatabaseSecret", "AppSecret", "VerifyTokenSecret")


class StaticPolicies:
    """samtranslator asks IAM for managed policies' ARNs; the template names none, and no
    test may reach IAM, so the map is static."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": (
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            ),
        }


def sam() -> dict[str, Any]:
    """The template as shipped (``wahook.deploy.template()``)."""
    parsed: dict[str, Any] = yaml_parse(template().read_text("utf-8"))
    return parsed


def translated() -> dict[str, Any]:
    """CloudFormation from the SAM template, with the functions' local ``CodeUri``
    (``receiver.zip``, ``processor.zip``, which ``sam deploy`` uploads) as S3 URIs in
    ``CODE_BUCKET``. Needs ``AWS_DEFAULT_REGION`` (set for every test)."""
    doc = sam()
    for resource in doc["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            props = resource["Properties"]
            props["CodeUri"] = f"s3://{CODE_BUCKET}/{props['CodeUri']}"
    out: dict[str, Any] = transform(doc, {}, StaticPolicies())
    return out


def parameter_values(doc: dict[str, Any], **given: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in doc["Parameters"].items():
        raw = given.get(name, spec.get("Default"))
        if raw is None:
            continue
        if spec["Type"] == "CommaDelimitedList":
            values[name] = [] if raw == "" else str(raw).split(",")
        else:
            values[name] = str(raw) if spec["Type"] == "String" else raw
    return values


class Evaluated:
    """``doc`` for given parameter values: active resources only, intrinsics it knows
    resolved."""

    def __init__(self, doc: dict[str, Any], **given: str) -> None:
        self.doc = doc
        self.params = parameter_values(doc, **given)
        self.conditions = {
            name: bool(self.value(spec)) for name, spec in doc.get("Conditions", {}).items()
        }

    def value(self, node: Any) -> Any:
        """``node`` with parameters, conditions and maps resolved; NoValue dropped."""
        if isinstance(node, list):
            items = [self.value(n) for n in node]
            return [i for i in items if i is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, arg)] = node.items()
            if key == "Ref" and arg == "AWS::NoValue":
                return _NO_VALUE
            if key == "Ref" and arg in self.params:
                return self.params[arg]
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.value(then if self.conditions[name] else otherwise)
            if key == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Condition":
                return self.conditions[arg]
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.value(items))
            if key == "Fn::FindInMap":
                name, top, second = (self.value(x) for x in arg)
                return self.doc["Mappings"][name][str(top)][second]
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}

    def resources(self, type_: str | None = None) -> dict[str, dict[str, Any]]:
        """Active resources (their condition true), properties evaluated."""
        found = {}
        for name, resource in self.doc["Resources"].items():
            if "Condition" in resource and not self.conditions[resource["Condition"]]:
                continue
            if type_ is None or resource["Type"] == type_:
                found[name] = self.value(copy.deepcopy(resource))
        return found

    def types(self) -> set[str]:
        return {r["Type"] for r in self.resources().values()}


_NO_VALUE = object()
