"""Deploy synthesized CDK templates into moto, as `cdk deploy` would into an account.

Emulates what CDK bootstrap provides (the version parameter and the assets bucket), creates the
stacks with moto's CloudFormation in dependency order (Exports before the stacks that import them),
then fixes the two things moto's CloudFormation does differently from AWS: state machines land in a
backend that does not execute, and SQS event source mappings would run inside SendMessage.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import boto3

BOOTSTRAP_QUALIFIER = "hnb659fds"
BOOTSTRAP_VERSION = "30"


@dataclass(frozen=True)
class EventSourceMappingSpec:
    uuid: str
    function_arn: str
    queue_arn: str
    batch_size: int
    maximum_concurrency: int | None
    report_batch_item_failures: bool


@dataclass
class Deployment:
    """What local mode reads back from the deployed stacks."""
    templates: dict[str, dict]
    # logical id -> physical id, over all stacks (CDK logical ids are unique across the app's stacks
    # except for CDK's own metadata, which local mode does not read).
    physical_ids: dict[str, str] = field(default_factory=dict)
    resource_types: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    event_source_mappings: list[EventSourceMappingSpec] = field(default_factory=list)

    def resources(self, resource_type: str) -> dict[str, dict]:
        """Template resources of one type, over all stacks: logical id -> resource JSON."""
        return {lid: res for tpl in self.templates.values()
                for lid, res in tpl.get("Resources", {}).items() if res.get("Type") == resource_type}


def minimal_zip() -> bytes:
    """Lambda code is imported in-process from this checkout, so the uploaded asset only has to exist."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "batchgate local mode: functions run in-process from the source tree\n")
    return buf.getvalue()


def _asset_keys(template: dict) -> set[str]:
    keys: set[str] = set()
    for res in template.get("Resources", {}).values():
        props = res.get("Properties") or {}
        for loc in (props.get("Code"), props.get("Content")):
            if isinstance(loc, dict) and isinstance(loc.get("S3Key"), str):
                keys.add(loc["S3Key"])
    return keys


def bootstrap(templates: dict[str, dict], account: str, region: str) -> None:
    ssm = boto3.client("ssm", region_name=region)
    ssm.put_parameter(Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version", Value=BOOTSTRAP_VERSION,
                      Type="String", Overwrite=True)
    s3 = boto3.client("s3", region_name=region)
    bucket = f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{account}-{region}"
    s3.create_bucket(Bucket=bucket)
    body = minimal_zip()
    for template in templates.values():
        for key in _asset_keys(template):
            s3.put_object(Bucket=bucket, Key=key, Body=body)


def _imports(obj: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "Fn::ImportValue" and isinstance(v, str):
                found.add(v)
            found |= _imports(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= _imports(v)
    return found


def _exports(template: dict) -> set[str]:
    return {o["Export"]["Name"] for o in template.get("Outputs", {}).values()
            if isinstance(o.get("Export", {}).get("Name"), str)}


def deploy_order(templates: dict[str, dict]) -> list[str]:
    """Stacks whose imports are all exported by already-ordered stacks come first."""
    pending = dict(templates)
    order: list[str] = []
    available: set[str] = set()
    while pending:
        ready = [name for name, tpl in pending.items() if _imports(tpl) <= available]
        if not ready:  # a cycle or an import nobody exports: let CloudFormation report it
            ready = [next(iter(pending))]
        for name in sorted(ready):
            order.append(name)
            available |= _exports(pending.pop(name))
    return order


def deploy(templates: dict[str, dict], region: str = "us-east-1", account: str = "123456789012") -> Deployment:
    bootstrap(templates, account, region)
    cfn = boto3.client("cloudformation", region_name=region)
    deployment = Deployment(templates=templates)
    for name in deploy_order(templates):
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(templates[name]),
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise RuntimeError(f"moto could not create stack {name}: {stack['StackStatus']} "
                               f"{stack.get('StackStatusReason', '')}")
        for out in stack.get("Outputs", []):
            deployment.outputs[out["OutputKey"]] = out["OutputValue"]
        paginator = cfn.get_paginator("list_stack_resources")
        for page in paginator.paginate(StackName=name):
            for res in page["StackResourceSummaries"]:
                deployment.physical_ids[res["LogicalResourceId"]] = res.get("PhysicalResourceId", "")
                deployment.resource_types[res["LogicalResourceId"]] = res["ResourceType"]
    reregister_state_machines(account, region)
    deployment.event_source_mappings = take_over_event_source_mappings(region)
    return deployment


def reregister_state_machines(account: str, region: str) -> None:
    """moto's CloudFormation creates state machines in `stepfunctions_backends`, but with
    `execute_state_machine` the API serves the parser backend: create each one there too, under
    the same name, so it has the same ARN and really runs."""
    from moto.stepfunctions.models import stepfunctions_backends
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    source = stepfunctions_backends[account][region]
    target = stepfunctions_parser_backends[account][region]
    for sm in list(source.state_machines):
        created = target.create_state_machine(name=sm.name, definition=sm.definition,
                                              roleArn=sm.roleArn, sm_type=sm.type)
        if created.arn != sm.arn:
            raise RuntimeError(f"state machine re-registered as {created.arn}, expected {sm.arn}")


def take_over_event_source_mappings(region: str) -> list[EventSourceMappingSpec]:
    """Disable moto's SQS mappings (they would run the function inside SendMessage, one record at a
    time, on the sender's thread) and return their settings for local mode's own pollers."""
    lam = boto3.client("lambda", region_name=region)
    specs: list[EventSourceMappingSpec] = []
    for page in lam.get_paginator("list_event_source_mappings").paginate():
        for esm in page["EventSourceMappings"]:
            if ":sqs:" not in esm["EventSourceArn"]:
                continue
            lam.update_event_source_mapping(UUID=esm["UUID"], Enabled=False)
            specs.append(EventSourceMappingSpec(
                uuid=esm["UUID"], function_arn=esm["FunctionArn"], queue_arn=esm["EventSourceArn"],
                batch_size=int(esm.get("BatchSize") or 10),
                maximum_concurrency=(esm.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                report_batch_item_failures="ReportBatchItemFailures" in (esm.get("FunctionResponseTypes") or []),
            ))
    return specs
