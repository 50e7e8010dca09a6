"""Fixtures for the batches API tests: moto state + keys tables, bucket, bus and a trivial state machine."""
from __future__ import annotations

import time

import boto3
import pytest
from batches_helpers import BUCKET, BUS, KEYS_TABLE, PASS_DEFINITION, STATE_MACHINE, TABLE
from moto import mock_aws

from batchgate import aws, ids, settings
from batchgate.adapters.file_store import FileStore


def _tables() -> None:
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


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name, value in {"BATCHGATE_TABLE": TABLE, "BATCHGATE_KEYS_TABLE": KEYS_TABLE,
                        "BATCHGATE_BUCKET": BUCKET, "BATCHGATE_EVENT_BUS": BUS}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        settings.reset_settings()
        aws.reset_clients()
        _tables()
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("events").create_event_bus(Name=BUS)
        arn = boto3.client("stepfunctions").create_state_machine(
            name=STATE_MACHINE, definition=PASS_DEFINITION,
            roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
        monkeypatch.setenv("BATCHGATE_STATE_MACHINE_ARN", arn)
        settings.reset_settings()
        yield arn
    settings.reset_settings()
    aws.reset_clients()


@pytest.fixture
def state_machine_arn(aws_env):
    return aws_env


@pytest.fixture
def table(aws_env):
    return boto3.resource("dynamodb").Table(TABLE)


@pytest.fixture
def sfn(aws_env):
    return boto3.client("stepfunctions")


@pytest.fixture
def input_file(aws_env):
    """Registers a batch input file for a tenant (the files API's own adapter) and returns its id."""
    def make(tenant: str = "acme", purpose: str = "batch") -> str:
        now = int(time.time())
        file_id = ids.file_id()
        store = FileStore(TABLE, BUCKET)
        key = store.file_key(tenant, file_id)
        store.put_bytes(key, b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}\n')
        store.register(tenant, file_id=file_id, filename="in.jsonl", purpose=purpose, bytes=10,
                       s3_key=key, created_at=now, expires_at=now + 3600)
        return file_id
    return make
