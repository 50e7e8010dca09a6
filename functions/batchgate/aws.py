"""Lazily built boto3 clients, one per service per process (cold start), never at import.

boto3 honours AWS_ENDPOINT_URL, which is how local mode and the tests point them at moto. Local mode
registers a hook (`add_client_hook`) that sees every client built here, to check each call against the
calling function's IAM policies (local/iam.py).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)
_client_hooks: list[Callable] = []


def _hooked(c):
    for hook in _client_hooks:
        hook(c)
    return c


@functools.cache
def client(service: str):
    return _hooked(boto3.session.Session().client(service, config=_CONFIG))


@functools.cache
def resource(service: str):
    r = boto3.session.Session().resource(service, config=_CONFIG)
    _hooked(r.meta.client)
    return r


@functools.cache
def s3_presigner():
    """An S3 client for presigned URLs: SigV4 (botocore may presign with the legacy SigV2 otherwise,
    which KMS-encrypted objects and newer regions refuse)."""
    return _hooked(boto3.session.Session().client("s3", config=_CONFIG.merge(Config(signature_version="s3v4"))))


def add_client_hook(hook: Callable) -> None:
    """`hook(client)` runs on every client built from now on (the cached ones are dropped)."""
    _client_hooks.append(hook)
    reset_clients()


def remove_client_hook(hook: Callable) -> None:
    if hook in _client_hooks:
        _client_hooks.remove(hook)
    reset_clients()


def reset_clients() -> None:
    client.cache_clear()
    resource.cache_clear()
    s3_presigner.cache_clear()
