"""Fixtures for the batch engine against moto: one state table, bucket and chunk queue per test, the
development upstream on 127.0.0.1, and helpers that play the state machine and the SQS trigger."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import boto3
import orjson
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws
from support.aws_world import create_state_table

from batchgate import aws, ids
from batchgate.adapters.batch_store import BatchStore
from batchgate.adapters.events import EventPublisher
from batchgate.adapters.file_store import FileStore
from batchgate.adapters.workflow import Workflow
from batchgate.handlers import chunk_worker, engine_deps, wf_dispatch, wf_finalize, wf_validate
from batchgate.models.records import BatchRecord
from batchgate.settings import reset_settings
from batchgate_local import atomic
from batchgate_local.dev_upstream import start_dev_upstream

TENANT = "tenant-a"


class FakeContext:
    """What the handlers read from Lambda's context; remaining time counts down from `seconds`."""
    function_name = "engine-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:engine-test"

    def __init__(self, seconds: float = 300.0):
        self.aws_request_id = uuid.uuid4().hex
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class RecordingWorkflow(Workflow):
    """The state machine's side of the task token: records what the engine sends it."""

    def __init__(self):
        super().__init__("arn:aws:states:us-east-1:123456789012:stateMachine:test")
        self.successes: list[tuple[str, dict]] = []
        self.failures: list[tuple[str, str]] = []

    def succeed_task(self, token: str, output: dict) -> bool:
        self.successes.append((token, output))
        return len(self.successes) == 1

    def fail_task(self, token: str, error: str, cause: str) -> bool:
        self.failures.append((token, error))
        return True


@pytest.fixture(scope="session")
def dev_upstream():
    server, base_url = start_dev_upstream()
    yield server, base_url
    server.shutdown()


@dataclass
class Engine:
    table: str
    bucket: str
    queue_url: str
    upstream: object
    workflow: RecordingWorkflow
    worker_outcomes: list = field(default_factory=list)

    @property
    def batches(self) -> BatchStore:
        return BatchStore(self.table, EventPublisher(None))

    @property
    def files(self) -> FileStore:
        return FileStore(self.table, self.bucket)

    # -- inputs ---------------------------------------------------------------------------------
    def upload(self, data: bytes, tenant: str = TENANT) -> str:
        file_id = ids.file_id()
        key = self.files.file_key(tenant, file_id)
        self.files.put_bytes(key, data)
        self.files.register(tenant, file_id=file_id, filename="input.jsonl", purpose="batch", bytes=len(data),
                            s3_key=key, created_at=int(time.time()), expires_at=None)
        return file_id

    def create_batch(self, data: bytes, endpoint: str = "/v1/chat/completions", window: int = 3600,
                     tenant: str = TENANT, **extra) -> str:
        now = int(time.time())
        batch_id = ids.batch_id(now)
        self.batches.put_new(BatchRecord(
            id=batch_id, tenant=tenant, endpoint=endpoint, input_file_id=self.upload(data, tenant),
            completion_window="24h", status="validating", created_at=now, expires_at=now + window, **extra))
        return batch_id

    def batch(self, batch_id: str, tenant: str = TENANT) -> BatchRecord:
        return self.batches.get(tenant, batch_id, consistent=True)

    # -- the state machine's steps --------------------------------------------------------------
    def validate(self, batch_id: str, tenant: str = TENANT) -> dict:
        return wf_validate.handler({"batch_id": batch_id, "tenant": tenant}, FakeContext())

    def dispatch(self, batch_id: str, tenant: str = TENANT, token: str | None = None) -> dict:
        return wf_dispatch.handler({"batch_id": batch_id, "tenant": tenant,
                                    "task_token": token or f"token-{batch_id}"}, FakeContext())

    def finalize(self, batch_id: str, reason: str, tenant: str = TENANT, **state) -> dict:
        return wf_finalize.handler({"batch_id": batch_id, "tenant": tenant, "reason": reason, **state},
                                   FakeContext())

    # -- the SQS trigger ------------------------------------------------------------------------
    def receive(self, max_messages: int = 1) -> list[dict]:
        return boto3.client("sqs").receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages,
                                                   VisibilityTimeout=30).get("Messages", [])

    def run_worker(self, messages: list[dict], seconds: float = 300.0) -> set[str]:
        """One worker invocation; deletes acked messages, makes failed ones visible again."""
        sqs = boto3.client("sqs")
        now = str(int(time.time() * 1000))
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "test",
                           "ApproximateFirstReceiveTimestamp": now},
            "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:chunks", "awsRegion": "us-east-1"}
            for m in messages]}
        try:
            resp = chunk_worker.handler(event, FakeContext(seconds))
            failed = {f["itemIdentifier"] for f in resp["batchItemFailures"]}
        except BatchProcessingError:  # every record failed: Lambda fails the invocation
            failed = {m["MessageId"] for m in messages}
        for m in messages:
            if m["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                              VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return failed

    def drain(self, max_rounds: int = 200, seconds: float = 300.0) -> int:
        rounds = 0
        while rounds < max_rounds:
            messages = self.receive()
            if not messages:
                return rounds
            self.run_worker(messages, seconds)
            rounds += 1
        raise AssertionError("queue never drained")

    # -- results --------------------------------------------------------------------------------
    def file_lines(self, file_id: str | None, tenant: str = TENANT) -> list[dict]:
        if file_id is None:
            return []
        record = self.files.get(tenant, file_id)
        data = self.files.read_all(record)
        assert record.bytes == len(data)
        assert data.endswith(b"\n")
        return [orjson.loads(line) for line in data.splitlines()]

    def run_all(self, batch_id: str) -> BatchRecord:
        """validate -> dispatch -> workers -> finalize(completed), as the state machine would."""
        assert self.validate(batch_id)["outcome"] == "valid"
        self.dispatch(batch_id)
        self.drain()
        assert self.workflow.successes, "the last chunk's worker did not resume the workflow"
        self.finalize(batch_id, "completed")
        return self.batch(batch_id)


@pytest.fixture
def engine(dev_upstream, monkeypatch):
    server, base_url = dev_upstream
    upstreams = {"upstreams": {"default": {"base_url": base_url, "concurrency": 8, "max_attempts": 3,
                                           "timeout_seconds": 20, "connect_timeout_seconds": 2}}}
    env = {"BATCHGATE_TABLE": "state", "BATCHGATE_BUCKET": "bucket", "BATCHGATE_CHUNK_MAX_LINES": "5",
           "BATCHGATE_UPSTREAMS": orjson.dumps(upstreams).decode(),
           "BATCHGATE_WORKER_STATUS_POLL_SECONDS": "0.2", "BATCHGATE_WORKER_FLUSH_SECONDS": "60",
           "BATCHGATE_FINALIZE_LEASE_WAIT_SECONDS": "0.5", "BATCHGATE_EVENT_BUS": "engine-events"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # DynamoDB applies each conditional write atomically; moto does not (two threads can both win a
    # claim). Restore AWS's guarantee as local mode does; idempotent, and left installed (it only locks).
    atomic.install()
    with mock_aws():
        reset_settings()
        aws.reset_clients()
        boto3.client("s3").create_bucket(Bucket="bucket")
        create_state_table("state")
        boto3.client("events").create_event_bus(Name="engine-events")  # status changes publish to it
        queue_url = boto3.client("sqs").create_queue(QueueName="chunks")["QueueUrl"]
        monkeypatch.setenv("BATCHGATE_CHUNK_QUEUE_URL", queue_url)
        reset_settings()
        workflow = RecordingWorkflow()
        monkeypatch.setattr(engine_deps, "workflow", lambda: workflow)
        yield Engine("state", "bucket", queue_url, server, workflow)
        reset_settings()
        aws.reset_clients()
