"""batchgate.aws builds every client of a process from one botocore session (a cold start loads the
endpoint data once, not once per client), one at a time (a session is not thread-safe: local mode and
the workers' `to_thread` build clients from several threads), and forgets both on reset."""
from __future__ import annotations

import threading

import boto3
import pytest

from batchgate import aws

SERVICES = ["s3", "sqs", "dynamodb", "stepfunctions", "events", "ssm", "secretsmanager", "lambda"]


@pytest.fixture
def sessions(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    made: list[boto3.session.Session] = []
    real = boto3.session.Session

    def counting(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(boto3.session, "Session", counting)
    aws.reset_clients()
    yield made
    aws.reset_clients()


def test_every_client_and_resource_of_a_process_comes_from_one_session(sessions):
    clients = [aws.client(s) for s in ("s3", "sqs", "dynamodb")] + [aws.resource("dynamodb").meta.client,
                                                                    aws.s3_presigner()]
    assert len(sessions) == 1
    assert aws.client("s3") is clients[0]          # and each is built once
    aws.reset_clients()
    assert aws.client("s3") is not clients[0] and len(sessions) == 2


def test_clients_built_from_many_threads_at_once_are_all_built(sessions):
    start, built, errors = threading.Barrier(len(SERVICES)), {}, []

    def build(service: str) -> None:
        start.wait()
        try:
            built[service] = aws.client(service)
        except Exception as exc:   # a session used by two threads at once fails this way
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(s,)) for s in SERVICES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {s: c.meta.service_model.service_name for s, c in built.items()} == {
        s: s for s in SERVICES}
    assert len(sessions) == 1
