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


def reset_clients() -> None:
    client.cache_clear()
    resource.cache_clear()
