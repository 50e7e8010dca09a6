"""Fixtures for the batches API tests: moto state + keys tables, bucket, bus and a trivial state machine."""
from __future__ import annotations

import time

import boto3
import pytest
from batches_helpers import BUCKET, BUS, KEYS_TABLE, STATE_MACHINE, TABLE
from support.aws_world import aws_world

from batchgate import ids
from batchgate.adapters.file_store import FileStore


@pytest.fixture
def aws_env(monkeypatch):
    with aws_world(monkeypatch, table=TABLE, keys_table=KEYS_TABLE, bucket=BUCKET, event_bus=BUS,
                   state_machine=STATE_MACHINE) as world:
        yield world.state_machine_arn


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
