"""Lazily built boto3 clients, one per service per process (cold start), never at import.

boto3 honours AWS_ENDPOINT_URL, which is how local mode and the tests point them at moto.
"""
from __future__ import annotations

import functools

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)


@functools.cache
def client(service: str):
    return boto3.session.Session().client(service, config=_CONFIG)


@functools.cache
def resource(service: str):
    return boto3.session.Session().resource(service, config=_CONFIG)


@functools.cache
def s3_presigner():
    """An S3 client for presigned URLs: SigV4 (botocore may presign with the legacy SigV2 otherwise,
    which KMS-encrypted objects and newer regions refuse)."""
    return boto3.session.Session().client("s3", config=_CONFIG.merge(Config(signature_version="s3v4")))


def reset_clients() -> None:
    client.cache_clear()
    resource.cache_clear()
    s3_presigner.cache_clear()
