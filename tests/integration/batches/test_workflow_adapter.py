"""The Step Functions adapter: named executions, and waking a task that may no longer wait."""
from __future__ import annotations

import json

import boto3
from moto import mock_aws
from support.aws_world import PASS_DEFINITION

from batchgate import aws
from batchgate.adapters.workflow import Workflow


def test_start_names_the_execution_by_the_batch_id_and_is_repeatable(sfn, state_machine_arn):
    workflow = Workflow(state_machine_arn)
    arn = workflow.start("batch_" + "a" * 32, "acme")
    assert arn == workflow.execution_arn("batch_" + "a" * 32)
    described = sfn.describe_execution(executionArn=arn)
    assert json.loads(described["input"]) == {"batch_id": "batch_" + "a" * 32, "tenant": "acme"}
    assert workflow.start("batch_" + "a" * 32, "acme") == arn  # a retried create starts nothing new
    assert len(sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]) == 1


def test_failing_a_token_that_no_longer_waits_is_not_an_error(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # the executing backend checks tokens; the default one accepts anything
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        aws.reset_clients()
        arn = boto3.client("stepfunctions").create_state_machine(
            name="m", definition=PASS_DEFINITION, roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
        assert Workflow(arn).fail_task("stale-token", error="Batch.Cancelled", cause="c") is False
        assert Workflow(arn).succeed_task("stale-token", {"ok": True}) is False
    aws.reset_clients()
