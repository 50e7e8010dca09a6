"""Lazily built boto3 clients, one per service per process (cold start), never at import.

They come from one botocore session per process: a session loads the endpoint and partition data once
(a new session per client loaded it again, ~0.1 s of a cold start for each). A session is not
thread-safe (local mode runs functions on threads), so clients are built one at a time.

boto3 honours AWS_ENDPOINT_URL, which is how local mode and the tests point them at moto. Local mode
registers a hook (`add_client_hook`) that sees every client built here, to check each call against the
calling function's IAM policies (local/iam.py).
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)
_client_hooks: list[Callable] = []
_BUILD = threading.Lock()


def _hooked(c):
    for hook in _client_hooks:
        hook(c)
    return c


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@functools.cache
def client(service: str):
    with _BUILD:
        return _hooked(_session().client(service, config=_CONFIG))


@functools.cache
def resource(service: str):
    with _BUILD:
        r = _session().resource(service, config=_CONFIG)
        _hooked(r.meta.client)
        return r


@functools.cache
def s3_presigner():
    """An S3 client for presigned URLs: SigV4 (botocore may presign with the legacy SigV2 otherwise,
    which KMS-encrypted objects and newer regions refuse)."""
    with _BUILD:
        return _hooked(_session().client("s3", config=_CONFIG.merge(Config(signature_version="s3v4"))))


def add_client_hook(hook: Callable) -> None:
    """`hook(client)` runs on every client built from now on (the cached ones are dropped)."""
    _client_hooks.append(hook)
    reset_clients()


def remove_client_hook(hook: Callable) -> None:
    if hook in _client_hooks:
        _client_hooks.remove(hook)
    reset_clients()


def reset_clients() -> None:
    """Forget the clients and the session (the environment they were built from changed)."""
    _session.cache_clear()
    client.cache_clear()
    resource.cache_clear()
    s3_presigner.cache_clear()
