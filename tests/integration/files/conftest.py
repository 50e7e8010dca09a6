"""Fixtures for the Files/Uploads API tests: a fresh moto state table and bucket per test."""
from __future__ import annotations

import boto3
import pytest
from files_helpers import BUCKET, TABLE, sdk_client
from moto import mock_aws

from batchgate import aws, settings


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("BATCHGATE_TABLE", TABLE)
    monkeypatch.setenv("BATCHGATE_BUCKET", BUCKET)
    with mock_aws():
        settings.reset_settings()
        aws.reset_clients()
        boto3.client("dynamodb").create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield
    settings.reset_settings()
    aws.reset_clients()


@pytest.fixture
def s3(aws_env):
    return boto3.client("s3")


@pytest.fixture
def table(aws_env):
    return boto3.resource("dynamodb").Table(TABLE)


@pytest.fixture
def sdk(aws_env):
    return sdk_client


@pytest.fixture
def small_limits(monkeypatch, aws_env):
    """Shrink the size thresholds so the 413 and redirect paths are cheap to reach."""
    monkeypatch.setenv("BATCHGATE_MAX_DIRECT_UPLOAD_BYTES", "2048")
    monkeypatch.setenv("BATCHGATE_CONTENT_REDIRECT_BYTES", "1024")
    settings.reset_settings()
