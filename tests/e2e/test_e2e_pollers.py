"""Local mode's SQS event source mapping: batches up to the mapping's size, runs in parallel up to its
MaximumConcurrency, deletes what succeeded and redelivers `batchItemFailures`."""
from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from batchgate_local.deploy import EventSourceMappingSpec
from batchgate_local.lambdas import FunctionSpec
from batchgate_local.pollers import SqsPoller

pytestmark = pytest.mark.e2e

CALLS: list[list[dict]] = []
_lock = threading.Lock()
_active = 0
PEAK = [0]


def record_handler(event, context):
    """Fails message 0 on its first delivery; remembers every batch and the peak parallelism."""
    global _active
    with _lock:
        _active += 1
        PEAK[0] = max(PEAK[0], _active)
        CALLS.append(event["Records"])
    time.sleep(0.3)
    with _lock:
        _active -= 1
    return {"batchItemFailures": [
        {"itemIdentifier": r["messageId"]} for r in event["Records"]
        if json.loads(r["body"])["i"] == 0 and r["attributes"]["ApproximateReceiveCount"] == "1"]}


def test_poller_batches_runs_in_parallel_and_redelivers_failures(local_service):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="e2e-poller")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    spec = FunctionSpec(logical_id="PollerTestFn", name="poller-test", handler=f"{__name__}.record_handler",
                        arn="arn:aws:lambda:us-east-1:123456789012:function:poller-test", timeout_seconds=30)
    local_service.lambdas.register(spec)
    poller = SqsPoller(EventSourceMappingSpec(uuid="test-uuid", function_arn=spec.arn, queue_arn=arn, batch_size=3,
                                              maximum_concurrency=2, report_batch_item_failures=True),
                       local_service.lambdas, "us-east-1", retry_visibility_seconds=1)
    for i in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"i": i}))

    poller.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            bodies = [json.loads(r["body"])["i"] for batch in CALLS for r in batch]
            if bodies.count(0) == 2 and len(bodies) == 13:
                break
            time.sleep(0.1)
    finally:
        poller.stop()

    bodies = [json.loads(r["body"])["i"] for batch in CALLS for r in batch]
    assert sorted(bodies) == [0, *range(12)]  # each once, message 0 again after its failure
    assert max(len(batch) for batch in CALLS) <= 3
    assert PEAK[0] == 2
    record = CALLS[0][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
               ["Attributes"]["ApproximateNumberOfMessages"]) == 0


LATE: dict[str, threading.Event] = {"second": threading.Event(), "third": threading.Event()}


def late_handler(event, context):
    """Delivery 1 answers only after its timeout, once delivery 2 (the same message, back after its
    visibility timeout) holds it; delivery 2 dies; delivery 3 is the message coming back again."""
    count = event["Records"][0]["attributes"]["ApproximateReceiveCount"]
    if count == "1":
        LATE["second"].wait(30)
        return {"batchItemFailures": []}
    if count == "2":
        LATE["second"].set()
        raise RuntimeError("the second holder dies")
    LATE["third"].set()
    return {"batchItemFailures": []}


def test_an_invocation_past_its_timeout_acks_nothing(local_service):
    # Given a 1 s function on a queue whose messages come back after 2 s, and a first invocation that
    # answers only once the message came back to a second one, which dies
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="e2e-poller-late", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    spec = FunctionSpec(logical_id="PollerLateFn", name="poller-late", handler=f"{__name__}.late_handler",
                        arn="arn:aws:lambda:us-east-1:123456789012:function:poller-late", timeout_seconds=1)
    local_service.lambdas.register(spec)
    poller = SqsPoller(EventSourceMappingSpec(uuid="late-uuid", function_arn=spec.arn, queue_arn=arn, batch_size=1,
                                              maximum_concurrency=2, report_batch_item_failures=True),
                       local_service.lambdas, "us-east-1", retry_visibility_seconds=1)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"i": 0}))

    # When they run
    poller.start()
    try:
        # Then the late answer (Lambda would have timed it out) deleted nothing: the message comes back
        assert LATE["second"].wait(30), "the message never came back after its visibility timeout"
        assert LATE["third"].wait(30), "the late first invocation acked the message the second one held"
    finally:
        poller.stop()
