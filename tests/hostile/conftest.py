"""Hostile-input suites: one moto world per test module."""
from __future__ import annotations

import boto3
import pytest
from hostile_helpers import BUCKET, BUS, KEYS_TABLE, PASS_DEFINITION, STATE_MACHINE, TABLE
from moto import mock_aws

from batchgate import aws, settings


def _create_world() -> str:
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    ddb.create_table(
        TableName=KEYS_TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("events").create_event_bus(Name=BUS)
    return boto3.client("stepfunctions").create_state_machine(
        name=STATE_MACHINE, definition=PASS_DEFINITION,
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]


@pytest.fixture(scope="module")
def world():
    """Tables, bucket, bus and a do-nothing state machine under moto, shared by one module's tests
    (hypothesis examples accumulate in it on purpose: a rejected request must not change it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name, value in {"BATCHGATE_TABLE": TABLE, "BATCHGATE_KEYS_TABLE": KEYS_TABLE,
                            "BATCHGATE_BUCKET": BUCKET, "BATCHGATE_EVENT_BUS": BUS,
                            "BATCHGATE_MAX_DIRECT_UPLOAD_BYTES": str(64 * 1024)}.items():
            mp.setenv(name, value)
        with mock_aws():
            settings.reset_settings()
            aws.reset_clients()
            mp.setenv("BATCHGATE_STATE_MACHINE_ARN", _create_world())
            settings.reset_settings()
            yield
        settings.reset_settings()
        aws.reset_clients()
