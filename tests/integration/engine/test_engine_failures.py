"""Validation failures, cancel, expiry and upstream errors end to end through the engine handlers."""
from __future__ import annotations

import threading
import time

import boto3
import orjson
import pytest
from engine_helpers import chat_lines
from support.sdk import until

from batchgate.domain import status
from batchgate.domain.finalize import ChunksBusy


def _line(**fields) -> bytes:
    base = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def test_invalid_file_fails_the_batch_with_one_error_per_bad_line(engine):
    lines = [
        _line(custom_id="ok-1"),
        b"{not json",
        _line(custom_id=..., ),
        _line(custom_id="a", method="GET"),
        _line(custom_id="b", url="/v1/embeddings"),
        _line(custom_id="c", body={"messages": []}),
        _line(custom_id="d", body={"model": "m", "messages": [], "stream": True}),
        _line(custom_id="e", body={"model": "other", "messages": []}),
        _line(custom_id="ok-1"),
        b"",
        _line(custom_id="f", body="text"),
        b"[1, 2]",
        b'{"custom_id": "g", "method": "POST", "url": "/v1/chat/completions", "body": {"model": NaN}}',
    ]
    batch_id = engine.create_batch(b"\n".join(lines) + b"\n\n  \n")
    assert engine.validate(batch_id)["outcome"] == "failed"
    batch = engine.batch(batch_id)
    assert batch.status == "failed" and batch.failed_at and batch.in_progress_at is None
    got = [(e["line"], e["code"], e["param"]) for e in batch.errors]
    assert got == [
        (2, "invalid_json_line", None),
        (3, "missing_required_parameter", "custom_id"),
        (4, "invalid_request", "method"),
        (5, "invalid_url", "url"),
        (6, "invalid_request", "body.model"),
        (7, "streaming_unsupported", "body.stream"),
        (8, "mismatched_model", "body.model"),
        (9, "duplicate_custom_id", "custom_id"),
        (10, "invalid_json_line", None),
        (11, "invalid_request", "body"),
        (12, "invalid_json_line", None),
        (13, "invalid_json_line", None),
    ]
    assert batch.errors[0]["message"] == "This line is not parseable as valid JSON."
    assert batch.errors[4]["message"] == "Model parameter is required."
    assert engine.receive() == []  # nothing was dispatched


def test_empty_file_fails_with_empty_file(engine):
    batch_id = engine.create_batch(b"\n")
    assert engine.validate(batch_id)["outcome"] == "failed"
    assert [e["code"] for e in engine.batch(batch_id).errors] == ["empty_file"]


def test_cancel_while_running_stops_upstream_calls_and_reports_batch_cancelled(engine):
    # Given 4 chunks; the first two run, the third's lines take 60 s and are with the model when the user cancels
    slow = {i: "__sleep_ms:60000__" for i in range(10, 15)}
    batch_id = engine.create_batch(chat_lines(20, extra=slow))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    engine.run_worker(engine.receive())
    engine.run_worker(engine.receive())
    assert engine.batch(batch_id).completed == 10  # request_counts move while the batch runs
    third = engine.receive()
    calls = len(engine.upstream.calls)
    worker = threading.Thread(target=engine.run_worker, args=(third,))
    worker.start()
    until(lambda: len(engine.upstream.calls) > calls)  # an event: the slow lines reached the model
    status.transition(engine.batches, "tenant-a", batch_id, "cancelling")
    worker.join(45)
    # Then the in-flight requests were abandoned (not waited out: the model is still on them)
    assert not worker.is_alive()
    engine.drain()  # the fourth chunk's message: the worker sees cancelling and does nothing
    assert engine.finalize(batch_id, "cancelled")["status"] == "cancelled"

    batch = engine.batch(batch_id)
    assert batch.status == "cancelled" and batch.cancelled_at
    out = engine.file_lines(batch.output_file_id)
    err = engine.file_lines(batch.error_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(10)]
    assert [e["custom_id"] for e in err] == [f"req-{i}" for i in range(10, 20)]
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}
    assert err[0]["response"] is None
    assert err[0]["error"]["message"] == "This request was not executed because the batch was cancelled."
    assert (batch.total, batch.completed, batch.failed) == (20, 10, 0)


def test_cancel_before_validation_reports_every_line_cancelled_without_running(engine):
    batch_id = engine.create_batch(chat_lines(3))
    status.transition(engine.batches, "tenant-a", batch_id, "cancelling")
    assert engine.validate(batch_id)["outcome"] == "cancelled"
    assert engine.finalize(batch_id, "cancelled")["status"] == "cancelled"
    batch = engine.batch(batch_id)
    assert batch.output_file_id is None
    errors = engine.file_lines(batch.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("req-0", "batch_cancelled"), ("req-1", "batch_cancelled"), ("req-2", "batch_cancelled")]
    assert (batch.total, batch.completed, batch.failed) == (3, 0, 0)


def test_dispatch_of_a_cancelled_batch_fails_its_own_token(engine):
    batch_id = engine.create_batch(chat_lines(3))
    engine.validate(batch_id)
    status.transition(engine.batches, "tenant-a", batch_id, "cancelling")
    assert engine.dispatch(batch_id, token="tok-x")["chunks_sent"] == 0
    assert engine.workflow.failures == [("tok-x", "Batch.Cancelled")]
    assert engine.receive() == []


def test_expiry_keeps_finished_work_and_reports_batch_expired(engine):
    batch_id = engine.create_batch(chat_lines(15))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    engine.run_worker(engine.receive())
    engine.batches.update_fields("tenant-a", batch_id, {"expires_at": int(time.time()) - 1})
    engine.drain()  # the other chunks' workers see the window is over
    assert engine.finalize(batch_id, "expired")["status"] == "expired"
    batch = engine.batch(batch_id)
    assert batch.expired_at
    out = engine.file_lines(batch.output_file_id)
    err = engine.file_lines(batch.error_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(5)]
    assert [e["custom_id"] for e in err] == [f"req-{i}" for i in range(5, 15)]
    assert {e["error"]["code"] for e in err} == {"batch_expired"}
    assert err[0]["error"]["message"] == \
        "This request could not be executed before the completion window expired."
    assert (batch.completed, batch.failed) == (5, 0)


def test_expiry_hitting_a_cancelling_batch_finishes_cancelled(engine):
    batch_id = engine.create_batch(chat_lines(3))
    engine.validate(batch_id)
    status.transition(engine.batches, "tenant-a", batch_id, "cancelling")
    assert engine.finalize(batch_id, "expired")["status"] == "cancelled"
    err = engine.file_lines(engine.batch(batch_id).error_file_id)
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}


def test_rate_limits_and_one_off_server_errors_are_retried(engine):
    markers = {0: "__fail_429_once__", 1: "__fail_500_once__", 2: "__fail_429_ms_once__"}
    batch_id = engine.create_batch(chat_lines(4, extra=markers, prefix="retry"))
    calls_before = len(engine.upstream.calls)
    started = time.monotonic()
    batch = engine.run_all(batch_id)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    out = engine.file_lines(batch.output_file_id)
    assert [o["custom_id"] for o in out] == [f"retry-{i}" for i in range(4)]
    assert batch.error_file_id is None
    assert len(engine.upstream.calls) - calls_before == 7


def test_upstream_400_goes_to_the_error_file_with_its_body(engine):
    batch_id = engine.create_batch(chat_lines(6, extra={1: "__fail_400__", 4: "__fail_500__"}))
    batch = engine.run_all(batch_id)
    assert batch.status == "completed"
    out = engine.file_lines(batch.output_file_id)
    err = engine.file_lines(batch.error_file_id)
    assert [o["custom_id"] for o in out] == ["req-0", "req-2", "req-3", "req-5"]
    assert [e["custom_id"] for e in err] == ["req-1", "req-4"]
    assert err[0]["error"] is None and err[0]["response"]["status_code"] == 400
    assert err[0]["response"]["body"]["error"]["code"] == "invalid_value"
    assert err[1]["response"]["status_code"] == 500  # after max_attempts
    assert (batch.completed, batch.failed) == (4, 2)
    assert engine.files.get("tenant-a", batch.error_file_id).filename == f"{batch_id}_error.jsonl"


def test_unreachable_upstream_is_an_upstream_error_line(engine, monkeypatch):
    import orjson as _o
    monkeypatch.setenv("BATCHGATE_UPSTREAMS", _o.dumps({"upstreams": {"default": {
        "base_url": "http://127.0.0.1:9/v1", "max_attempts": 2, "connect_timeout_seconds": 1}}}).decode())
    from batchgate.settings import reset_settings
    reset_settings()
    batch_id = engine.create_batch(chat_lines(2))
    batch = engine.run_all(batch_id)
    err = engine.file_lines(batch.error_file_id)
    assert [e["error"]["code"] for e in err] == ["upstream_error", "upstream_error"]
    assert err[0]["response"] is None and batch.failed == 2 and batch.output_file_id is None


def test_finalize_waits_for_live_leases_then_asks_to_be_retried(engine):
    batch_id = engine.create_batch(chat_lines(3))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    from batchgate.adapters.chunk_store import ChunkStore
    assert ChunkStore("state").claim(batch_id, 0, "someone", time.time() + 600, time.time())
    status.transition(engine.batches, "tenant-a", batch_id, "cancelling")
    with pytest.raises(ChunksBusy) as info:
        engine.finalize(batch_id, "cancelled")
    assert type(info.value).__name__ == "Batch.ChunksBusy"
    assert engine.batch(batch_id).status == "cancelling"
    ChunkStore("state").release(batch_id, 0, "someone")
    assert engine.finalize(batch_id, "cancelled")["status"] == "cancelled"
    assert len(engine.file_lines(engine.batch(batch_id).error_file_id)) == 3
    assert boto3.client("s3").list_objects_v2(Bucket="bucket", Prefix=f"work/{batch_id}/")["KeyCount"] == 0


BROKEN = {"Error": "Lambda.Unknown", "Cause": "Traceback (most recent call last): internal detail"}


def test_a_step_that_broke_past_its_retries_fails_the_batch_keeping_what_ran(engine):
    batch_id = engine.create_batch(chat_lines(15))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    engine.run_worker(engine.receive())  # the first chunk of 5 ran; then, say, Dispatch broke
    assert engine.finalize(batch_id, "failed", error=BROKEN, outcome="valid")["status"] == "failed"
    batch = engine.batch(batch_id)
    assert batch.failed_at and (batch.completed, batch.failed) == (5, 0)
    [error] = batch.errors
    assert error["code"] == "batch_failed" and "Lambda.Unknown" in error["message"]
    assert "Traceback" not in error["message"]  # a Cause's internals are not the tenant's to read
    out, err = engine.file_lines(batch.output_file_id), engine.file_lines(batch.error_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(5)]
    assert [e["custom_id"] for e in err] == [f"req-{i}" for i in range(5, 15)]
    assert {e["error"]["code"] for e in err} == {"batch_failed"}


def test_a_validate_that_broke_fails_the_batch_and_a_cancelling_one_is_cancelled(engine):
    broken = engine.create_batch(chat_lines(3))
    assert engine.finalize(broken, "failed", error=BROKEN)["status"] == "failed"
    assert engine.batch(broken).errors[0]["code"] == "batch_failed"
    cancelling = engine.create_batch(chat_lines(3))
    status.transition(engine.batches, "tenant-a", cancelling, "cancelling")
    assert engine.finalize(cancelling, "failed", error=BROKEN)["status"] == "cancelled"


def test_abort_ends_the_batch_without_assembling_anything(engine, monkeypatch):
    from batchgate.domain import finalize
    batch_id = engine.create_batch(chat_lines(3))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    monkeypatch.setattr(finalize, "_assemble", lambda *a, **k: pytest.fail("abort must not assemble"))
    assert engine.finalize(batch_id, "abort", error=BROKEN)["status"] == "failed"
    batch = engine.batch(batch_id)
    assert batch.output_file_id is None and "could not be assembled" in batch.errors[0]["message"]


def test_a_crashed_workers_lease_ends_soon_after_expiry(engine, monkeypatch):
    """Issue 8, defect 8: a worker that dies holding a chunk must not keep Finalize from sealing it
    for the rest of its invocation (the batch would reach `expired` up to ~15 minutes late). Its lease
    ends at most 15 s after expires_at (stored rounded up to the second), so Finalize seals the chunk
    from expires_at + 17 s on."""
    from batchgate.adapters.chunk_store import ChunkStore
    from batchgate.domain import worker

    batch_id = engine.create_batch(chat_lines(3))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    expires_at = int(time.time()) + 60
    engine.batches.update_fields("tenant-a", batch_id, {"expires_at": expires_at})

    async def crash(self):
        raise RuntimeError("worker crashed")
    monkeypatch.setattr(worker._ChunkRun, "run", crash)
    monkeypatch.setattr(ChunkStore, "release", lambda self, *a, **kw: None)  # it dies: nothing released
    engine.run_worker(engine.receive(), seconds=900.0)
    held = ChunkStore("state").get(batch_id, 0)
    assert held.lease_owner and held.lease_until <= expires_at + 16, (held.lease_until, expires_at)
    assert ChunkStore("state").seal(batch_id, 0, expires_at + 17)

