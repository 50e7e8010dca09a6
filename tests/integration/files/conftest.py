"""Fixtures for the Files/Uploads API tests: a fresh moto state table and bucket per test."""
from __future__ import annotations

import boto3
import pytest
from files_helpers import BUCKET, TABLE, sdk_client
from support.aws_world import aws_world

from batchgate import settings


@pytest.fixture
def aws_env(monkeypatch):
    with aws_world(monkeypatch, table=TABLE, bucket=BUCKET):
        yield


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
