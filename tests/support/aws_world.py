"""A moto world shaped like the deployed stateful stack (design.md): the state table, the keys table,
the bucket and, on request, the chunk queue, event bus and a state machine, with the BATCHGATE_*
variables pointing at them and batchgate's cached settings and clients rebuilt for it."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from batchgate import aws, settings

# Started executions go nowhere: the API tests only check that one was started.
PASS_DEFINITION = json.dumps({"StartAt": "Noop", "States": {"Noop": {"Type": "Pass", "End": True}}})


@dataclass(frozen=True)
class World:
    """What the world was built with, for tests that talk to the resources directly."""
    table: str
    bucket: str
    keys_table: str | None = None
    queue_url: str | None = None
    event_bus: str | None = None
    state_machine_arn: str | None = None


# The tables as the stateful stack declares them (infra/stacks/stateful.py); tests/infra checks these
# against the synthesized template, so every test that creates a table creates the deployed one.
STATE_TABLE_KEYS = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "S"}],
}
STATE_TABLE_TTL_ATTRIBUTE = "ttl"
KEYS_TABLE_KEYS = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
}


def create_state_table(name: str) -> None:
    """The state table, on whatever endpoint boto3 points at (moto's mock, or AWS_ENDPOINT_URL)."""
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **STATE_TABLE_KEYS)
    # moto records TTL but never expires items: retention tests still see every item they wrote.
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": STATE_TABLE_TTL_ATTRIBUTE})


def create_keys_table(name: str) -> None:
    boto3.client("dynamodb").create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **KEYS_TABLE_KEYS)


def reset_caches() -> None:
    """Forget batchgate's settings and boto3 clients, so the next ones see the current env and mock."""
    settings.reset_settings()
    aws.reset_clients()


@contextmanager
def aws_world(mp: pytest.MonkeyPatch, *, table: str, bucket: str, keys_table: str | None = None,
              queue: str | None = None, event_bus: str | None = None, state_machine: str | None = None,
              env: dict[str, str] | None = None) -> Iterator[World]:
    """Builds the world inside `mock_aws` and points BATCHGATE_* (plus `env`) at it through `mp`, whose
    owner undoes the variables; the caches are reset on the way in and out."""
    mp.delenv("AWS_ENDPOINT_URL", raising=False)  # left by local mode, it would bypass moto's mock
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    names = {"BATCHGATE_TABLE": table, "BATCHGATE_BUCKET": bucket, "BATCHGATE_KEYS_TABLE": keys_table,
             "BATCHGATE_EVENT_BUS": event_bus}
    for name, value in {**names, **(env or {})}.items():
        if value is not None:
            mp.setenv(name, value)
    try:
        with mock_aws():
            reset_caches()
            yield _build(mp, table=table, bucket=bucket, keys_table=keys_table, queue=queue,
                         event_bus=event_bus, state_machine=state_machine)
    finally:
        reset_caches()


def _build(mp: pytest.MonkeyPatch, *, table: str, bucket: str, keys_table: str | None, queue: str | None,
           event_bus: str | None, state_machine: str | None) -> World:
    create_state_table(table)
    if keys_table:
        create_keys_table(keys_table)
    boto3.client("s3").create_bucket(Bucket=bucket)
    if event_bus:
        boto3.client("events").create_event_bus(Name=event_bus)
    queue_url = boto3.client("sqs").create_queue(QueueName=queue)["QueueUrl"] if queue else None
    arn = boto3.client("stepfunctions").create_state_machine(
        name=state_machine, definition=PASS_DEFINITION,
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"] if state_machine else None
    for name, value in {"BATCHGATE_CHUNK_QUEUE_URL": queue_url, "BATCHGATE_STATE_MACHINE_ARN": arn}.items():
        if value is not None:
            mp.setenv(name, value)
    settings.reset_settings()  # the settings read before the ARN/URL existed are stale
    return World(table=table, bucket=bucket, keys_table=keys_table, queue_url=queue_url,
                 event_bus=event_bus, state_machine_arn=arn)
