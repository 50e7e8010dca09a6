"""Every input line exactly once across the output and error files, whatever crashes, duplicate
deliveries or hand-backs happen."""
from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import boto3
import orjson
import pytest
from engine_helpers import chat_lines

from batchgate.adapters.chunk_store import ChunkStore
from batchgate.domain import status
from batchgate.domain.chunk_commit import SegmentCommitter
from batchgate.handlers import engine_deps
from batchgate.models.engine import AnsweredLine, ChunkMessage, Usage


class Crash(Exception):
    """Stands for the Lambda dying between two calls."""


def _deliver_now(engine) -> None:
    """moto keeps a delayed message hidden for its DelaySeconds; fast-forward what is delayed."""
    from moto.sqs.models import sqs_backends
    for queue in sqs_backends["123456789012"]["us-east-1"].queues.values():
        for message in queue._messages:
            message.delayed_until = 0


def _all_custom_ids(engine, batch) -> Counter:
    lines = engine.file_lines(batch.output_file_id) + engine.file_lines(batch.error_file_id)
    return Counter(line["custom_id"] for line in lines)


def test_crash_after_segment_write_before_commit_is_adopted_without_rerunning(engine, monkeypatch):
    batch_id = engine.create_batch(chat_lines(5))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    real_commit = ChunkStore.commit_segment
    monkeypatch.setattr(ChunkStore, "commit_segment", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    # the process dies hard: not even the lease is given back
    monkeypatch.setattr(ChunkStore, "release", lambda *a, **k: None)
    message = engine.receive()
    calls = len(engine.upstream.calls)
    assert engine.run_worker(message)  # reported as a failed record
    assert len(engine.upstream.calls) - calls == 5
    assert boto3.client("s3").get_object(Bucket="bucket", Key=f"work/{batch_id}/000000/000000.seg.json")
    monkeypatch.setattr(ChunkStore, "commit_segment", real_commit)

    # While the dead worker's lease lives, its redelivered message leaves the chunk alone, but the
    # pointer is not dropped: it goes back on the queue, delayed until the lease runs out
    assert not engine.run_worker(engine.receive())  # acked: a delayed copy carries the pointer
    assert engine.batch(batch_id).completed == 0
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=engine.queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert engine.receive() == []  # not before the lease ends
    # Once the lease has run out, the delayed copy adopts the segment: no upstream call
    boto3.resource("dynamodb").Table("state").update_item(
        Key={"pk": f"B#{batch_id}", "sk": "CHUNK#000000"}, UpdateExpression="SET lease_until = :t",
        ExpressionAttributeValues={":t": int(time.time()) - 1})
    _deliver_now(engine)
    engine.drain()
    assert len(engine.upstream.calls) - calls == 5
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    assert batch.status == "completed"
    assert _all_custom_ids(engine, batch) == Counter(f"req-{i}" for i in range(5))
    assert (batch.completed, batch.failed) == (5, 0)


def test_crash_with_lease_released_is_redelivered_and_adopted(engine, monkeypatch):
    batch_id = engine.create_batch(chat_lines(8))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    real_commit = ChunkStore.commit_segment
    monkeypatch.setattr(ChunkStore, "commit_segment", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    assert engine.run_worker(engine.receive())  # failed record -> visible again
    monkeypatch.setattr(ChunkStore, "commit_segment", real_commit)
    calls = len(engine.upstream.calls)
    engine.drain()
    assert len(engine.upstream.calls) - calls == 4  # only the second chunk's lines ran (8 lines: two chunks of 4)
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    assert _all_custom_ids(engine, batch) == Counter(f"req-{i}" for i in range(8))
    assert batch.completed == 8


def test_duplicate_delivery_of_the_same_message_runs_the_chunk_once(engine):
    batch_id = engine.create_batch(chat_lines(5))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    body = engine.receive()[0]["Body"]
    for _ in range(2):
        boto3.client("sqs").send_message(QueueUrl=engine.queue_url, MessageBody=body)
    calls = len(engine.upstream.calls)
    # the original and a duplicate in one event, one more duplicate afterwards
    engine.run_worker(engine.receive(10))
    engine.drain()
    assert len(engine.upstream.calls) - calls == 5
    assert len(engine.workflow.successes) >= 1
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    assert _all_custom_ids(engine, batch) == Counter(f"req-{i}" for i in range(5))
    assert batch.completed == 5 and batch.chunks_done == 1


def test_concurrent_deliveries_of_one_chunk_let_only_one_worker_run_it(engine):
    batch_id = engine.create_batch(chat_lines(5, extra={i: "__sleep_ms:300__" for i in range(5)}))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    body = engine.receive()[0]["Body"]
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=engine.queue_url, MessageBody=body)
    sqs.send_message(QueueUrl=engine.queue_url, MessageBody=body)
    first, second = engine.receive(), engine.receive()
    calls = len(engine.upstream.calls)
    threads = [threading.Thread(target=engine.run_worker, args=(m,)) for m in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(engine.upstream.calls) - calls == 5
    engine.finalize(batch_id, "completed")
    assert _all_custom_ids(engine, engine.batch(batch_id)) == Counter(f"req-{i}" for i in range(5))


def test_worker_short_of_time_commits_what_it_has_and_hands_the_rest_back(engine, monkeypatch):
    monkeypatch.setenv("BATCHGATE_CHUNK_MAX_LINES", "40")
    from batchgate.settings import reset_settings
    reset_settings()
    # 40 lines of 200 ms at concurrency 8 need ~1 s; each invocation has 0.8 s (stops at 0.6 s left)
    batch_id = engine.create_batch(chat_lines(40, extra={i: "__sleep_ms:200__" for i in range(40)}))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    rounds = engine.drain(seconds=0.8)
    assert rounds >= 2  # the chunk was handed back at least once
    chunk = ChunkStore("state").get(batch_id, 0)
    assert chunk.state == "done" and chunk.segments >= 2
    assert engine.workflow.successes
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    out = engine.file_lines(batch.output_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(40)]
    assert batch.completed == 40


@pytest.mark.parametrize("lines", [1, 11])
def test_chunks_done_triggers_one_success_per_batch(engine, lines):
    batch_id = engine.create_batch(chat_lines(lines))
    engine.run_all(batch_id)
    assert [s[0] for s in engine.workflow.successes] == [f"token-{batch_id}"]


def _signal_when_answered(monkeypatch, indexes: set[int]) -> threading.Event:
    """An event set once the running worker holds answers for every line in `indexes`."""
    from batchgate.domain import worker
    answered = threading.Event()
    real_one = worker._ChunkRun._one

    async def one(self, client, line):
        await real_one(self, client, line)
        if indexes <= set(self.commits.results):
            answered.set()
    monkeypatch.setattr(worker._ChunkRun, "_one", one)
    return answered


def test_answers_after_a_gap_are_kept_when_the_batch_is_cancelled(engine, monkeypatch):
    # Issue 9 finding 5: lines [hangs, ok, ok]; the cancel lands once both ok lines were answered.
    batch_id = engine.create_batch(chat_lines(3, extra={0: "__sleep_ms:30000__"}))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    answered = _signal_when_answered(monkeypatch, {1, 2})
    worker = threading.Thread(target=engine.run_worker, args=(engine.receive(),))
    worker.start()
    assert answered.wait(30)
    status.transition(engine.batches, "tenant-a", batch_id, "cancelling")
    worker.join(30)
    assert not worker.is_alive()
    assert engine.finalize(batch_id, "cancelled")["status"] == "cancelled"
    batch = engine.batch(batch_id)
    out, err = engine.file_lines(batch.output_file_id), engine.file_lines(batch.error_file_id)
    assert [o["custom_id"] for o in out] == ["req-1", "req-2"]
    assert [(e["custom_id"], e["error"]["code"]) for e in err] == [("req-0", "batch_cancelled")]
    assert (batch.completed, batch.failed) == (2, 0)


def test_a_handed_back_chunk_does_not_send_answered_lines_again(engine, monkeypatch):
    # The first run runs out of time while line 0 hangs; lines 1 and 2 were answered by then.
    batch_id = engine.create_batch(chat_lines(3, extra={0: "__sleep_ms:3000__"}))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    calls = len(engine.upstream.calls)
    answered = _signal_when_answered(monkeypatch, {1, 2})
    remaining = {"seconds": 300.0}
    from batchgate.handlers import chunk_worker
    real_handler = chunk_worker.handler

    def handler(event, context):  # the invocation's clock jumps to its end once 1 and 2 are answered
        threading.Thread(target=lambda: answered.wait(30) and remaining.update(seconds=0.0), daemon=True).start()
        context.get_remaining_time_in_millis = lambda: int(remaining["seconds"] * 1000)
        return real_handler(event, context)
    monkeypatch.setattr(chunk_worker, "handler", handler)
    assert not engine.run_worker(engine.receive())  # handed back: acked, the same pointer re-sent
    assert len(engine.upstream.calls) - calls == 3
    monkeypatch.setattr(chunk_worker, "handler", real_handler)
    engine.drain()
    assert len(engine.upstream.calls) - calls == 4  # only line 0 went again
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    assert _all_custom_ids(engine, batch) == Counter(f"req-{i}" for i in range(3))
    assert batch.completed == 3


def test_a_run_that_starts_out_of_time_sends_nothing_and_hands_the_chunk_back(engine):
    """Issue 13 (8): a worker reached its chunk with no Lambda time left (a slow claim on a loaded
    machine). Lambda reports 0 ms left, never less, so the reserves are 0 too: it must still stop
    starting lines (it used to send the whole chunk past its deadline), and hand the chunk back."""
    batch_id = engine.create_batch(chat_lines(5))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    calls = len(engine.upstream.calls)
    engine.run_worker(engine.receive(), seconds=0.0)
    assert len(engine.upstream.calls) == calls
    assert ChunkStore("state").get(batch_id, 0).next_line == 0
    assert engine.receive(), "the chunk's pointer went back on the queue"


def test_a_worker_never_plans_to_wait_past_the_point_where_it_abandons_its_lines(engine, monkeypatch):
    """Issue 13: the worker waited up to a second between ticks whatever its time, so with a cancel
    reserve under a second (a short timeout) it noticed the point to abandon its lines only after its
    timeout: Lambda kills such a run and its message counts one more receive towards the DLQ. Every
    wait the worker asks for must end by the time the cancel reserve is reached."""
    from batchgate.domain import worker
    from batchgate.handlers import chunk_worker, engine_deps

    # Polls and flushes far apart: only the worker's own time decides when it wakes.
    monkeypatch.setattr(engine_deps, "worker_limits",
                        lambda: worker.WorkerLimits(status_poll_seconds=30.0, flush_seconds=30.0))
    batch_id = engine.create_batch(chat_lines(2, extra={0: "__sleep_ms:30000__"}))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    contexts, plans = [], []   # (seconds left just before the worker decided, the wait it asked for)
    real_handler, real_lanes = chunk_worker.handler, worker.run_lanes

    def handler(event, context):
        contexts.append(context)
        return real_handler(event, context)

    def left() -> float:
        return contexts[-1].get_remaining_time_in_millis() / 1000

    async def run_lanes(width, take, send, tick, first_wait):
        async def spied_tick():
            before = left()
            wait = await tick()
            plans.append((before, wait))
            return wait
        plans.append((left(), first_wait))
        return await real_lanes(width, take, send, spied_tick, first_wait)

    reserves = []   # the run's cancel reserve: 10% of the time it had when it started (less on a busy machine)
    real_drive = worker._ChunkRun._drive

    async def drive(self, client, lines):
        reserves.append(self.cancel_reserve)
        return await real_drive(self, client, lines)

    monkeypatch.setattr(chunk_worker, "handler", handler)
    monkeypatch.setattr(worker, "run_lanes", run_lanes)
    monkeypatch.setattr(worker._ChunkRun, "_drive", drive)
    engine.run_worker(engine.receive(), seconds=2.5)   # reserves: stop ~0.625 s, cancel ~0.25 s
    assert plans and plans[-1][1] is None, "the run ended by abandoning its hanging line"
    [cancel_reserve] = reserves
    for before, wait in plans[:-1]:   # (remaining time is read in whole milliseconds)
        assert wait <= max(0.0, before - cancel_reserve) + 0.002, (plans, cancel_reserve)


def test_a_run_that_outlived_its_lease_cannot_change_what_a_committed_segment_holds(engine):
    # Given a chunk whose first run lost its lease while still alive (Lambda ends a run at its timeout,
    # but a write it sent just before may still land; local mode cannot stop a thread at all), and a
    # second run that took the chunk over and committed lines 0-1, then 2-4
    data = chat_lines(5)
    batch_id = engine.create_batch(data)
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    ports, msg = engine_deps.worker_ports(), ChunkMessage(tenant="tenant-a", batch_id=batch_id, chunk=0)
    ends = list(itertools.accumulate(len(line) + 1 for line in data.splitlines()))

    def answered(i: int) -> AnsweredLine:
        line = {"id": f"batch_req_{i}", "custom_id": f"req-{i}", "response": {"status_code": 200, "body": {}},
                "error": None}
        return AnsweredLine(True, orjson.dumps(line) + b"\n", Usage(), ends[i])

    first_view = ports.chunks.get(batch_id, 0)  # the chunk as the first run read it
    second = SegmentCommitter(msg, ports.chunks.claim(batch_id, 0, "second", time.time() + 300, time.time()),
                              "second", ports)
    second.results.update({i: answered(i) for i in range(2)})
    assert second.flush(release=False)
    second.results.update({i: answered(i) for i in range(2, 5)})
    assert second.flush(release=True) and second.chunk.state == "done"

    # When the first run, late, writes its own segment from line 0 (lines 0-3)
    first = SegmentCommitter(msg, first_view, "first", ports)
    first.results.update({i: answered(i) for i in range(4)})
    assert first.flush(release=False) is False  # its record is refused, its commit fails

    # Then the result files hold every line exactly once: a segment's record names its own writer's bytes
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    assert _all_custom_ids(engine, batch) == Counter(f"req-{i}" for i in range(5))


def _work_object(path: str) -> str:
    return "seg" if "seg.json" in path else "ahead" if "ahead" in path else "other"


def test_a_chunks_first_run_reads_no_segments_or_kept_answers_and_a_later_run_does(engine):
    # S3 calls by the kind of work object they touch (a missing key answers 403 here, so each such
    # read would also cost a LIST: PUT-class pricing, the bench's largest S3 item)
    touched: Counter = Counter()

    def hook(client):
        if client.meta.service_model.service_name == "s3":
            client.meta.events.register("before-call.s3", lambda model, params, **_: touched.update(
                [(model.name, _work_object(params.get("url_path", "") + "?" + str(params.get("query_string"))))]))

    from batchgate import aws
    aws.add_client_hook(hook)
    try:
        # Given a 10-line batch in two chunks that run once each
        batch_id = engine.create_batch(chat_lines(10))
        engine.validate(batch_id)
        engine.dispatch(batch_id)
        first = engine.receive()
        touched.clear()
        engine.run_worker(first)
        # Then the first run of a chunk neither looks for segments nor for kept answers
        assert not [k for k in touched if k[1] in ("seg", "ahead") and k[0] != "PutObject"], touched
        # But a second run of a chunk (its first run lost its lease) does look for them
        second = engine.receive()
        chunk = ChunkMessage.model_validate_json(second[0]["Body"])
        assert ChunkStore("state").claim(batch_id, chunk.chunk, "crashed-run", time.time() - 5, time.time() - 5)
        touched.clear()
        engine.run_worker(second)
        assert touched[("GetObject", "seg")] >= 1 and touched[("GetObject", "ahead")] >= 1, touched
    finally:
        aws.remove_client_hook(hook)
    engine.drain()
    engine.finalize(batch_id, "completed")
    assert [line["custom_id"] for line in engine.file_lines(engine.batch(batch_id).output_file_id)] == \
        [f"req-{i}" for i in range(10)]


def test_a_run_holds_a_bounded_amount_of_answers_whatever_the_chunks_size(engine, monkeypatch):
    """Issue 10 (2,000-line chunks): answers wait in memory until a segment commits them, and a slow
    first line keeps every later answer from being committed. From `flush_bytes` held the run commits
    the answered prefix; at `held_bytes_max` its lanes start no new line until a commit makes room."""
    from batchgate.domain import worker
    from batchgate.handlers import engine_deps
    from batchgate.settings import reset_settings

    monkeypatch.setenv("BATCHGATE_CHUNK_MAX_LINES", "40")
    reset_settings()
    # ~3 answers of ~600 bytes fill it; flushes by size only (not by time)
    monkeypatch.setattr(engine_deps, "worker_limits", lambda: worker.WorkerLimits(
        status_poll_seconds=30.0, flush_seconds=300.0, flush_bytes=1000, held_bytes_max=2000))
    held: list[int] = []   # line indexes in the order their answers were held
    real_hold = SegmentCommitter.hold

    def hold(self, index, answered):
        held.append(index)
        return real_hold(self, index, answered)

    monkeypatch.setattr(SegmentCommitter, "hold", hold)
    # Given a 40-line chunk whose first line takes 3 s and the others none, 8 in flight
    batch_id = engine.create_batch(chat_lines(40, extra={0: "__sleep_ms:3000__"}))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    engine.drain()
    # Then while line 0 was in flight, at most the answers that fill the bound plus those already in
    # flight when it filled were taken (without the bound: all 39)
    assert held.index(0) <= 3 + 1 + 8, held
    chunk = ChunkStore("state").get(batch_id, 0)
    assert chunk.state == "done" and chunk.segments >= 3   # commits by size, not by time
    engine.finalize(batch_id, "completed")
    out = engine.file_lines(engine.batch(batch_id).output_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(40)]
