"""Issue 11, day-2 operations against local mode: a consumer rule on the bus receives every status event
with the Batch object in its detail (validated against docs/events/batch-status.schema.json), and the
operator commands `usage`, `chunks redrive` and `batches inspect` read what the service keeps."""
from __future__ import annotations

import datetime as dt
import json
import time

import boto3
import jsonschema
import orjson
import pytest

from batchgate_cli import chunks, inspect, usage
from infra.paths import ROOT

from .conftest import TENANT_A, make_batch_lines

pytestmark = pytest.mark.e2e

STACK = "batchgate-local"   # the local environment's stacks: batchgate-local-stateful / -service
SCHEMA = json.loads((ROOT / "docs/events/batch-status.schema.json").read_text())
MODEL = "ops-model"          # only this module's batches use it
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def _outputs(stack: str) -> dict[str, str]:
    described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


@pytest.fixture(scope="module")
def consumer(local_service):
    """A rule on the service's bus with an SQS queue as its target, as a consumer would set it up."""
    bus = _outputs(f"{STACK}-stateful")["EventBusName"]
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName="ops-consumer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="ops-consumer", EventBusName=bus,
                    EventPattern=json.dumps({"source": ["batchgate"], "detail-type": [{"prefix": "batch."}]}))
    events.put_targets(Rule="ops-consumer", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    return url


def _events_until_terminal(queue_url: str, batch_id: str, timeout: float = 60) -> list[dict]:
    """The consumer queue's events for `batch_id`, read until its terminal event arrives."""
    sqs, seen = boto3.client("sqs"), []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            event = json.loads(m["Body"])
            if event["detail"]["batch_id"] == batch_id:
                seen.append(event)
        if any(e["detail"]["status"] in TERMINAL for e in seen):
            return seen
    raise AssertionError(f"no terminal event for {batch_id}; saw {[e['detail-type'] for e in seen]}")


def _wait_terminal(client, batch_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not end")


@pytest.fixture(scope="module")
def finished(client_a, consumer):
    """One batch of 5 lines run to the end, and the events the consumer received for it."""
    f = client_a.files.create(file=("ops.jsonl", make_batch_lines(5, model=MODEL, prefix="ops")), purpose="batch")
    created = client_a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                      metadata={"team": "ops"})
    events = _events_until_terminal(consumer, created.id)
    return _wait_terminal(client_a, created.id), events


def test_a_consumer_receives_each_status_event_with_the_batch_object(finished):
    batch, events = finished
    statuses = [e["detail"]["status"] for e in events]
    assert statuses == ["in_progress", "finalizing", "completed"]
    for event in events:
        assert event["source"] == "batchgate" and event["detail-type"] == f"batch.{event['detail']['status']}"
        assert event["resources"] == [batch.id]
        jsonschema.validate(event["detail"], SCHEMA)
        assert event["detail"]["tenant"] == TENANT_A
        assert event["detail"]["batch"]["status"] == event["detail"]["status"]
    # The terminal event is the batch as the API returns it: results are fetchable without another call.
    assert events[-1]["detail"]["batch"] == batch.model_dump(mode="json", exclude_unset=False)
    assert events[-1]["detail"]["batch"]["output_file_id"] == batch.output_file_id is not None
    assert events[-1]["detail"]["batch"]["metadata"] == {"team": "ops"}


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_the_other_endings_publish_events_that_validate_too(client_a, consumer, ending):
    # Given a batch whose input is not JSONL (it fails validation), or one cancelled at once
    slow = b"".join(json.dumps({    # lines that would take 5 s each: the cancel comes first
        "custom_id": f"end-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "ops-end-model", "messages": [{"role": "user", "content": f"hi {i} __sleep_ms:5000__"}]},
    }).encode() + b"\n" for i in range(3))
    data = b"{not json\n" if ending == "failed" else slow
    f = client_a.files.create(file=(f"{ending}.jsonl", data), purpose="batch")
    created = client_a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    if ending == "cancelled":
        client_a.batches.cancel(created.id)
    # Then every event the consumer gets for it validates, and the last one is the batch as the API has it
    events = _events_until_terminal(consumer, created.id)
    batch = _wait_terminal(client_a, created.id)
    assert batch.status == ending and events[-1]["detail"]["status"] == ending
    if ending == "cancelled":
        assert "cancelling" in [e["detail"]["status"] for e in events]
    for event in events:
        jsonschema.validate(event["detail"], SCHEMA)
    assert events[-1]["detail"]["batch"] == batch.model_dump(mode="json", exclude_unset=False)


def _run(main, argv, capsys) -> tuple[int, str]:
    """The command's exit code and stdout, without the log lines the in-process functions print meanwhile."""
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr().out
    return code, "".join(line for line in out.splitlines(keepends=True) if not line.startswith(('{"level"', '{"_aws"')))


def test_usage_reports_tokens_and_lines_per_tenant_and_model(finished, capsys):
    batch, _ = finished
    today = dt.datetime.fromtimestamp(batch.created_at, dt.UTC).date().isoformat()
    code, out = _run(usage.main, ["--stack", f"{STACK}-stateful", "--since", today, "--json"], capsys)
    assert code == 0
    report = orjson.loads(out)
    row = next(r for r in report["rows"] if (r["tenant"], r["model"]) == (TENANT_A, MODEL))
    assert (row["batches"], row["lines"], row["completed"], row["failed"]) == (1, 5, 5, 0)
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
        batch.usage.input_tokens, batch.usage.output_tokens, batch.usage.total_tokens)
    # one tenant only, and a window that ends before the batch counts nothing
    code, out = _run(usage.main, ["--stack", STACK, "--tenant", "tenant-b", "--since", today, "--json"], capsys)
    assert all(r["tenant"] == "tenant-b" for r in orjson.loads(out)["rows"])
    code, out = _run(usage.main, ["--stack", STACK, "--since", str(batch.created_at + 1), "--tenant", TENANT_A],
                     capsys)
    assert code == 0 and MODEL not in out and out.splitlines()[0].split()[:2] == ["TENANT", "MODEL"]


def test_inspect_shows_chunks_and_the_workflow_position(finished, capsys):
    batch, _ = finished
    code, out = _run(inspect.main, [batch.id, "--stack", STACK, "--json"], capsys)
    assert code == 0
    report = orjson.loads(out)
    assert report["batch"]["status"] == "completed" and report["batch"]["tenant"] == TENANT_A
    assert report["chunks"] and all(c["state"] == "done" for c in report["chunks"])
    assert sum(c["lines"][1] - c["lines"][0] for c in report["chunks"]) == 5
    assert report["workflow"]["status"] == "SUCCEEDED" and report["workflow"]["state"]
    assert report["waiting_on_token"] is False   # its task token is kept, but nothing waits on it any more
    # the table view, and another tenant's name does not reach the batch
    code, out = _run(inspect.main, [batch.id, "--stack", STACK, "--tenant", TENANT_A], capsys)
    assert code == 0 and f"batch {batch.id}" in out and "workflow: SUCCEEDED" in out
    assert inspect.main([batch.id, "--stack", STACK, "--tenant", "tenant-b"]) == 1
    assert inspect.main(["not-a-batch", "--stack", STACK]) == 2


def test_redrive_moves_dead_lettered_chunks_back_and_says_which(finished, capsys):
    batch, _ = finished
    outputs = _outputs(f"{STACK}-stateful")
    sqs = boto3.client("sqs")
    body = orjson.dumps({"tenant": TENANT_A, "batch_id": batch.id, "chunk": 0}).decode()
    for _ in range(3):  # as the chunk queue's redrive policy would leave them
        sqs.send_message(QueueUrl=outputs["ChunkDeadLetterQueueUrl"], MessageBody=body)
    code, out = _run(chunks.main, ["redrive", "--stack", STACK, "--json"], capsys)
    assert code == 0
    report = orjson.loads(out)
    assert report["moved"] == 3
    assert {(m["batch_id"], m["chunk"], m["tenant"]) for m in report["messages"]} == {(batch.id, 0, TENANT_A)}
    left = sqs.get_queue_attributes(QueueUrl=outputs["ChunkDeadLetterQueueUrl"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    # the workers take the moved pointers: the chunk is done, so the batch is unchanged
    code, out = _run(chunks.main, ["redrive", "--stack", STACK], capsys)
    assert code == 0 and out.splitlines() == ["0 chunk message(s) moved back to the chunk queue"]


def test_inspect_a_running_batch_shows_the_lease_and_the_waiting_dispatch(client_a, capsys):
    lines = b"".join(json.dumps({
        "custom_id": f"slow-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": f"hi {i} __sleep_ms:20000__"}]},
    }).encode() + b"\n" for i in range(2))
    f = client_a.files.create(file=("slow.jsonl", lines), purpose="batch")
    batch = client_a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    try:
        deadline, report = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # until a worker holds the chunk (its lines are in flight)
            code, out = _run(inspect.main, [batch.id, "--stack", STACK, "--tenant", TENANT_A, "--json"], capsys)
            report = orjson.loads(out)
            if any(c["lease_owner"] for c in report["chunks"]):
                break
            time.sleep(0.1)
        assert report is not None and any(c["lease_owner"] for c in report["chunks"]), report
        (leased,) = [c for c in report["chunks"] if c["lease_owner"]]
        assert leased["state"] == "open" and leased["lease_seconds_left"] > 0
        assert report["batch"]["status"] == "in_progress" and report["waiting_on_token"]
        assert report["workflow"]["status"] == "RUNNING" and report["workflow"]["state"] == "Dispatch"
    finally:
        client_a.batches.cancel(batch.id)  # stops the upstream calls; the batch ends cancelled
    assert _wait_terminal(client_a, batch.id).status == "cancelled"
