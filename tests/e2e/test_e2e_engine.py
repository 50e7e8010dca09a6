"""The batch engine as a user tries it: the official openai SDK against local mode, with the development
upstream's fault markers. Exactly-once and order on a multi-chunk batch, upstream retries and 4xx
answers, line errors, cancel (in_progress and validating), expiry, and the status events."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import boto3
import openai
import pytest
from support.sdk import TERMINAL, stop_process, until, wait_for_batch

from infra.config import ENVIRONMENTS

pytestmark = pytest.mark.e2e
SHORT_WINDOW = 6  # seconds, for the expiry test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _line(i: int, content: str | None = None, prefix: str = "req", **over) -> dict:
    row = {"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "dev-model", "messages": [{"role": "user", "content": content or f"hello {i}"}]}}
    return {**row, **over}


def _jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _start(client, data: bytes, endpoint: str = "/v1/chat/completions"):
    f = client.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")


def _wait(client, batch_id: str, statuses=TERMINAL, timeout: float = 60, poll: float = 0.2):
    """The batch once its status is in `statuses`, and every request_counts.completed seen meanwhile."""
    seen: list[int] = []
    batch = wait_for_batch(client, batch_id, statuses, timeout, poll,
                           each=lambda b: seen.append(b.request_counts.completed))
    assert batch.status in statuses, f"batch still {batch.status} after {timeout} s"
    return batch, seen


def _results(client, batch) -> tuple[list[dict], list[dict]]:
    def read(file_id):
        return [json.loads(x) for x in client.files.content(file_id).read().splitlines()] if file_id else []
    return read(batch.output_file_id), read(batch.error_file_id)


def _not_run_codes(errors: list[dict]) -> dict[str, int]:
    codes: dict[str, int] = {}
    for e in errors:
        if e["response"] is None:
            codes[e["error"]["code"]] = codes.get(e["error"]["code"], 0) + 1
    return codes

def _execution_events(batch_id: str) -> list[dict]:
    """The history of the batch's execution once it has ended (Finalize writes the terminal status
    before it returns; the execution ends once Step Functions has its answer: an event to wait for)."""
    from batchgate.handlers import engine_deps
    sfn = boto3.client("stepfunctions", region_name=os.environ["AWS_DEFAULT_REGION"])
    arn = engine_deps.workflow().execution_arn(batch_id)
    until(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", poll=0.2)
    return [e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
            for e in page["events"]]



def test_multi_chunk_batch_runs_every_line_once_in_order(client_a):
    n = 2500  # 2 chunks of 1,250 lines in the local environment (at most 2,000 a chunk, made even)
    batch = _start(client_a, _jsonl(_line(i, prefix="big") for i in range(n)))

    batch, seen = _wait(client_a, batch.id, timeout=120, poll=0.3)

    assert batch.status == "completed", batch
    assert batch.model == "dev-model"
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    out, err = _results(client_a, batch)
    assert err == [] and batch.error_file_id is None
    output = client_a.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert output.bytes == len(client_a.files.content(batch.output_file_id).read())
    assert [r["custom_id"] for r in out] == [f"big-{i}" for i in range(n)]
    assert len({r["id"] for r in out}) == n
    assert batch.request_counts.model_dump() == {"total": n, "completed": n, "failed": 0}
    assert seen == sorted(seen)  # progress only goes forward
    bodies = [r["response"]["body"]["usage"] for r in out]
    assert batch.usage.input_tokens == sum(u["prompt_tokens"] for u in bodies)
    assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in bodies)
    assert batch.usage.total_tokens == sum(u["total_tokens"] for u in bodies)
    assert batch.usage.total_tokens > 0


def test_embeddings_batch_completes_with_usage(client_a):
    rows = [{"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "dev-embed", "input": f"text {i}"}} for i in range(50)]

    batch, _ = _wait(client_a, _start(client_a, _jsonl(rows), "/v1/embeddings").id)

    assert batch.status == "completed", batch
    out, _ = _results(client_a, batch)
    assert [r["custom_id"] for r in out] == [f"emb-{i}" for i in range(50)]
    assert batch.usage.input_tokens == sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in out)


def test_retryable_upstream_errors_are_retried_and_4xx_lands_in_the_error_file(client_a):
    contents = ["__fail_429_once__ a", "__fail_429_ms_once__ b", "__fail_500_once__ c", "__fail_400__ d", "fine e"]
    batch = _start(client_a, _jsonl(_line(i, c, prefix="fault") for i, c in enumerate(contents)))

    batch, _ = _wait(client_a, batch.id)

    assert batch.status == "completed", batch
    out, err = _results(client_a, batch)
    assert [r["custom_id"] for r in out] == ["fault-0", "fault-1", "fault-2", "fault-4"]
    assert all(r["response"]["status_code"] == 200 for r in out)
    assert len(err) == 1
    bad = err[0]
    assert bad["custom_id"] == "fault-3"
    assert bad["error"] is None
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["code"] == "invalid_value"
    assert bad["response"]["request_id"]
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 4, "failed": 1}


def test_broken_lines_fail_the_batch_with_one_error_per_line(client_a):
    good = _line(0, prefix="inv")
    lines = [
        json.dumps(good).encode(),                                         # 1 fine
        b"{not json",                                                      # 2
        json.dumps(good).encode(),                                         # 3 same custom_id
        json.dumps(_line(3, prefix="inv", url="/v1/embeddings")).encode(),  # 4
        json.dumps(_line(4, prefix="inv", method="GET")).encode(),          # 5
        json.dumps(_line(5, prefix="inv", body={"messages": []})).encode(),  # 6 no model
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": good["body"]}).encode(),  # 7
        json.dumps(_line(7, prefix="inv", body={**good["body"], "model": "another"})).encode(),  # 8
        json.dumps(good | {"custom_id": "inv-8"}).encode(),                # 9 fine
    ]
    batch = _start(client_a, b"\n".join(lines) + b"\n")

    batch, _ = _wait(client_a, batch.id)

    assert batch.status == "failed", batch
    assert batch.failed_at and batch.in_progress_at is None
    got = [(e.line, e.code, e.param) for e in batch.errors.data]
    assert got == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "invalid_url", "url"),
        (5, "invalid_request", "method"),
        (6, "invalid_request", "body.model"),
        (7, "missing_required_parameter", "custom_id"),
        (8, "mismatched_model", "body.model"),
    ]
    assert all(e.message for e in batch.errors.data)
    assert batch.output_file_id is None and batch.error_file_id is None


def test_cancel_in_progress_keeps_finished_lines_and_marks_the_rest(client_a, upstream_server):
    n, fast = 300, 10  # one chunk; the first 10 lines are answered at once, the rest take 3 s each
    local = ENVIRONMENTS["local"].upstreams
    in_flight = local.upstreams[local.default].concurrency  # what local mode's worker sends at once
    before = len(upstream_server.calls)
    batch = _start(client_a, _jsonl(_line(i, None if i < fast else f"__sleep_ms:3000__ slow {i}", prefix="can")
                                    for i in range(n)))
    # An event, not a nap: the model has received more lines than fit in flight, so some were answered
    until(lambda: len(upstream_server.calls) > before + in_flight, poll=0.05)

    cancelling = client_a.batches.cancel(batch.id)
    batch, _ = _wait(client_a, batch.id, timeout=60, poll=0.1)

    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert batch.status == "cancelled", batch
    out, err = _results(client_a, batch)
    assert 0 < len(out) < n  # the cancel stopped the work: the rest never ran
    assert sorted(r["custom_id"] for r in out + err) == sorted(f"can-{i}" for i in range(n))
    assert _not_run_codes(err) == {"batch_cancelled": len(err)}
    assert batch.request_counts.model_dump() == {"total": n, "completed": len(out), "failed": 0}
    assert batch.cancelled_at >= batch.cancelling_at


def test_cancel_while_validating(client_a, monkeypatch):
    # Validate is held at its start until the cancel has been answered, so the cancel lands while the
    # batch is `validating` by construction, not by hoping 5,000 lines take longer than one request.
    from batchgate.handlers import wf_validate
    cancelled, entered = threading.Event(), threading.Event()
    real = wf_validate.validate_batch

    def held(tenant, batch_id, **kw):
        entered.set()
        assert cancelled.wait(60), "the test never cancelled"
        return real(tenant, batch_id, **kw)

    monkeypatch.setattr(wf_validate, "validate_batch", held)
    n = 500
    batch = _start(client_a, _jsonl(_line(i, prefix="val") for i in range(n)))
    assert entered.wait(60), "Validate never started"
    assert client_a.batches.retrieve(batch.id).status == "validating"
    cancelling = client_a.batches.cancel(batch.id)
    cancelled.set()
    batch, _ = _wait(client_a, batch.id, timeout=60)

    assert cancelling.status == "cancelling", cancelling
    assert batch.status == "cancelled", batch
    assert batch.in_progress_at is None
    out, err = _results(client_a, batch)
    assert out == []
    assert [e["custom_id"] for e in err] == [f"val-{i}" for i in range(n)]
    assert _not_run_codes(err) == {"batch_cancelled": n}
    assert batch.request_counts.completed == 0 and batch.request_counts.failed == 0


def test_a_failing_dispatch_never_pushes_the_expiry_back(client_a, monkeypatch):
    """Issue 8, defect 8: Dispatch's timeout is the batch's expiry. A retried Dispatch used to re-arm it
    with the same seconds_left, so every failed attempt (and every retry interval) moved the expiry
    later. Decided on the workflow's own events: each Dispatch attempt is armed (scheduled at + its
    timeout) no later than expires_at, give or take the second seconds_left is rounded to."""
    from batchgate.handlers import wf_dispatch
    attempts: dict[str, int] = {}
    real = wf_dispatch.dispatch_batch

    def flaky(tenant, batch_id, task_token, **kw):
        attempts[batch_id] = attempts.get(batch_id, 0) + 1
        if attempts[batch_id] <= 2:
            raise RuntimeError("injected Dispatch failure")
        return real(tenant, batch_id, task_token, **kw)

    monkeypatch.setattr(wf_dispatch, "dispatch_batch", flaky)
    batch = _start(client_a, _jsonl(_line(i, prefix="dsp") for i in range(3)))
    batch, _ = _wait(client_a, batch.id, timeout=120)
    assert batch.status == "completed" and attempts[batch.id] == 3, (batch.status, attempts)

    events = _execution_events(batch.id)
    armed = [e["timestamp"].timestamp() + e["taskScheduledEventDetails"]["timeoutInSeconds"]
             for e in events if e["type"] == "TaskScheduled"
             and e["taskScheduledEventDetails"]["resource"].endswith("waitForTaskToken")]
    assert len(armed) == 3, armed
    assert all(a <= batch.expires_at + 2 for a in armed), [round(a - batch.expires_at, 1) for a in armed]


def test_a_batch_whose_dispatch_failed_still_expires_on_time(client_a, monkeypatch):
    """Issue 8, defect 8: whatever Dispatch's failures cost, the batch reaches `expired` within 60 s of
    expires_at. The first attempt moves expires_at to 3 s from now (the window runs out while Dispatch
    fails), two attempts fail, the third parks the token but its chunks never run. A retried Dispatch
    used to be re-armed with the first seconds_left (the whole window again); decided on the batch's
    expired_at and the execution's own end, not on a sleep."""
    from batchgate.handlers import engine_deps, wf_dispatch
    attempts: dict[str, int] = {}
    moved: dict[str, int] = {}
    real = wf_dispatch.dispatch_batch

    class NoQueue:  # the chunks are never worked on: only the deadline can end this batch
        def send_all(self, messages):
            return len(list(messages))

    def flaky(tenant, batch_id, task_token, **kw):
        attempts[batch_id] = attempts.get(batch_id, 0) + 1
        if attempts[batch_id] == 1:
            moved[batch_id] = int(time.time()) + 3
            engine_deps.batches().update_fields(tenant, batch_id, {"expires_at": moved[batch_id]})
        if attempts[batch_id] <= 2:
            raise RuntimeError("injected Dispatch failure")
        return real(tenant, batch_id, task_token, **{**kw, "queue": NoQueue()})

    monkeypatch.setattr(wf_dispatch, "dispatch_batch", flaky)
    batch = _start(client_a, _jsonl(_line(i, prefix="exp") for i in range(3)))
    batch, _ = _wait(client_a, batch.id, timeout=150)
    assert batch.status == "expired" and attempts[batch.id] == 3, (batch.status, attempts)
    assert batch.expires_at == moved[batch.id]
    assert batch.expired_at - batch.expires_at <= 60, batch.expired_at - batch.expires_at

    events = _execution_events(batch.id)
    timed_out = [e for e in events if e["type"] == "TaskTimedOut"]
    ended = [e["timestamp"].timestamp() for e in events if e["type"] == "ExecutionSucceeded"]
    assert len(timed_out) == 1 and len(ended) == 1, [e["type"] for e in events]
    assert timed_out[0]["timestamp"].timestamp() <= batch.expires_at + 60
    assert ended[0] <= batch.expires_at + 60, ended[0] - batch.expires_at
    _, err = _results(client_a, batch)
    assert _not_run_codes(err) == {"batch_expired": 3}


def test_status_events_are_published(local_service, client_a):
    region = os.environ["AWS_DEFAULT_REGION"]
    events, sqs = boto3.client("events", region_name=region), boto3.client("sqs", region_name=region)
    bus = os.environ["BATCHGATE_EVENT_BUS"]
    queue_url = sqs.create_queue(QueueName=f"e2e-events-{free_port()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"e2e-events-{free_port()}"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["batchgate"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    try:
        done = _start(client_a, _jsonl(_line(i, prefix="evt") for i in range(3)))
        failed = _start(client_a, b"{broken\n")
        slow = _start(client_a, _jsonl(_line(i, "__sleep_ms:3000__", prefix="evs") for i in range(3)))
        client_a.batches.cancel(slow.id)
        for b in (done, failed, slow):
            assert _wait(client_a, b.id)[0].status in TERMINAL

        seen: dict[str, list[str]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and seen.get(done.id, [])[-1:] != ["batch.completed"]:
            for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                         WaitTimeSeconds=1).get("Messages", []):
                event = json.loads(m["Body"])
                seen.setdefault(event["detail"]["batch_id"], []).append(event["detail-type"])
                assert event["source"] == "batchgate" and event["detail"]["tenant"] == "tenant-a"
    finally:
        events.remove_targets(Rule=rule, EventBusName=bus, Ids=["q"])
        events.delete_rule(Name=rule, EventBusName=bus)
        sqs.delete_queue(QueueUrl=queue_url)

    assert seen.get(done.id) == ["batch.in_progress", "batch.finalizing", "batch.completed"]
    assert seen.get(failed.id) == ["batch.failed"]
    assert seen.get(slow.id) in (["batch.cancelling", "batch.cancelled"],
                                 ["batch.in_progress", "batch.cancelling", "batch.cancelled"])


@pytest.fixture
def short_window_cli(tmp_path):
    """A second local mode with a short window, started as a user would (the CLI, a subprocess: only one
    LocalService may run per process). Started in parallel with the package's service it only competes
    for the CPU, so it starts when needed."""
    port = free_port()
    # This process's local service must not leak into the child.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BATCHGATE_", "MOTO_"))}
    log_path = tmp_path / "local.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchgate_cli.main", "local", "--ephemeral", "--port", str(port),
             "--api-key", "sk-exp=exp", "--completion-window-seconds", str(SHORT_WINDOW)],
            stdout=subprocess.PIPE, stderr=log, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc, log_path
    finally:
        stop_process(proc)


def test_expiry_keeps_finished_work_and_marks_the_rest(short_window_cli):
    proc, log_path = short_window_cli
    line = proc.stdout.readline()
    assert line.startswith("ready: "), (line, log_path.read_text()[-2000:])
    client = openai.OpenAI(base_url=line.split(" ", 1)[1].strip(), api_key="sk-exp", max_retries=0, timeout=60)
    # 10 quick lines, then lines far slower than the window (32 in flight): exactly the quick prefix
    # finishes, whatever the machine's speed.
    n, quick = 200, 10
    rows = [_line(i, None if i < quick else f"__sleep_ms:60000__ slow {i}", prefix="exp") for i in range(n)]
    batch = _start(client, _jsonl(rows))

    batch, _ = _wait(client, batch.id, timeout=60)

    assert batch.status == "expired", batch
    assert batch.expires_at - batch.created_at == SHORT_WINDOW
    assert batch.expired_at - batch.expires_at <= 5
    out, err = _results(client, batch)
    assert [r["custom_id"] for r in out] == [f"exp-{i}" for i in range(quick)]
    assert sorted(r["custom_id"] for r in out + err) == sorted(f"exp-{i}" for i in range(n))
    assert _not_run_codes(err) == {"batch_expired": len(err)}
    assert batch.request_counts.model_dump() == {"total": n, "completed": len(out), "failed": 0}
