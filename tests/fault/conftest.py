"""Fault-injection fixtures: ONE local service for the package (start-up costs seconds), with the
harness's crash hooks, AWS error hooks and transition log installed, and a terminal summary line (shown
without -s): `fault injection: R runs, L lost, D duplicated, B bad transitions, N non-terminal,
W answers not their line's own`.

Package scope (tests/fault/__init__.py): LocalService changes process-wide state, and tearing it down
when these tests end keeps the suites that use `mock_aws` unaffected.
"""
from __future__ import annotations

import json
import os

import boto3
import pytest

from batchgate_local import LocalService

from . import harness

# Runs alternate between two tenants; the sweep checks no answer crosses from one line to another.
TENANTS = [("sk-fault-injection-a", "fault-tenant-a"), ("sk-fault-injection-b", "fault-tenant-b")]
SWEEPS: list[harness.Sweep] = []


@pytest.fixture(scope="package")
def fault_service():
    with LocalService(api_keys=dict(TENANTS), overrides=harness.SERVICE_OVERRIDES) as service:
        yield service


@pytest.fixture(scope="package")
def world(fault_service):
    """The service with every fault hook installed (undone at the end of the package)."""
    harness.replace_worker_timeout(fault_service.lambdas, harness.WORKER_TIMEOUT_SECONDS)
    sqs = boto3.client("sqs")
    queue_url = os.environ["BATCHGATE_CHUNK_QUEUE_URL"]
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    dlq_name = json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[1]
    dlq_url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url,
                             Attributes={"VisibilityTimeout": str(harness.QUEUE_VISIBILITY_SECONDS)})
    crashes, transitions = harness.CrashInjector(), harness.TransitionLog()
    with pytest.MonkeyPatch.context() as mp:
        harness.install_worker_limits(mp)
        harness.install_crash_hooks(mp, crashes)
        transitions.install(mp)
        yield harness.World(base_url=fault_service.base_url, tenants=TENANTS, upstream=fault_service.dev_upstream,
                            table=os.environ["BATCHGATE_TABLE"], queue_url=queue_url, dlq_url=dlq_url,
                            crashes=crashes, transitions=transitions,
                            timed_out=lambda: fault_service.invocations_timed_out)


@pytest.fixture(scope="package")
def aws_faults(world):
    """DynamoDB/S3/SQS errors on the functions' clients; tests switch them on with `.enabled`."""
    faults = harness.AwsFaults(seed=int(os.environ.get("FAULT_SEED", "1")))
    faults.install()
    yield faults
    faults.enabled = False


def pytest_terminal_summary(terminalreporter):
    if not SWEEPS:
        return
    total = harness.Sweep(runs=[r for s in SWEEPS for r in s.runs])
    terminalreporter.write_line(total.summary())
    for sweep in SWEEPS:
        for line in sweep.details():
            terminalreporter.write_line(line)
