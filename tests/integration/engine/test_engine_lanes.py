"""Lanes (issue 10, fairness): Dispatch sends the first chunk of each lane, each finished chunk sends the
next of its lane, and a worker that dies between finishing a chunk and that send loses nothing."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from engine_helpers import chat_lines

from batchgate.domain import worker


@pytest.fixture
def two_lanes(monkeypatch):
    from batchgate.settings import reset_settings

    monkeypatch.setenv("BATCHGATE_BATCH_LANES", "2")
    reset_settings()


def _chunks_in(messages) -> list[int]:
    return sorted(json.loads(m["Body"])["chunk"] for m in messages)


def test_a_batch_runs_its_chunks_two_at_a_time_and_completes(engine, two_lanes):
    batch_id = engine.create_batch(chat_lines(23))   # at 5 lines a chunk, 5 chunks: 6 (4,4,4,4,4,3) fill 2 lanes evenly
    engine.validate(batch_id)
    assert engine.dispatch(batch_id)["chunks_sent"] == 2
    queued = engine.receive(max_messages=10)
    assert _chunks_in(queued) == [0, 1], "only the first chunk of each lane is queued"
    engine.run_worker(queued[:1])                            # chunk 0 done: chunk 2 joins the queue
    engine.run_worker(queued[1:])
    queued = engine.receive(max_messages=10)
    assert _chunks_in(queued) == [2, 3]
    engine.run_worker(queued)
    last = engine.receive(max_messages=10)
    assert _chunks_in(last) == [4, 5], "each lane goes on to its third chunk"
    engine.run_worker(last)
    assert engine.receive(max_messages=10) == [] and engine.workflow.successes
    engine.finalize(batch_id, "completed")
    assert engine.batch(batch_id).completed == 23


def test_a_worker_that_dies_before_sending_the_next_chunk_of_its_lane_loses_nothing(engine, two_lanes,
                                                                                   monkeypatch):
    batch_id = engine.create_batch(chat_lines(23))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    real = worker.continue_lane
    deaths = Counter()

    def dies_once(msg, batch, ports):
        if not deaths[msg.chunk]:
            deaths[msg.chunk] += 1
            raise RuntimeError("the worker died between its commit and the lane's send")
        real(msg, batch, ports)
    monkeypatch.setattr(worker, "continue_lane", dies_once)
    engine.drain()   # each failed record comes back at once (the fixture makes it visible again)
    assert sorted(deaths) == [0, 1, 2, 3, 4, 5]
    assert engine.workflow.successes, "every chunk ran: the redelivery found its chunk done and went on"
    engine.finalize(batch_id, "completed")
    batch = engine.batch(batch_id)
    assert [line["custom_id"] for line in engine.file_lines(batch.output_file_id)] == [f"req-{i}" for i in range(23)]


def test_a_copy_of_a_pointer_continues_the_lane(engine, two_lanes):
    """SQS may deliver any pointer twice, and the lease may pass to whichever copy: the lane's stride is
    the batch's, so the copy that finishes the chunk sends the next one (a fault sweep found a copy
    without the stride ending its lane)."""
    import boto3

    batch_id = engine.create_batch(chat_lines(23))
    engine.validate(batch_id)
    engine.dispatch(batch_id)
    originals = engine.receive(max_messages=10)            # chunks 0 and 1: never run (their worker is gone)
    assert _chunks_in(originals) == [0, 1]
    for n in (0, 1):                                        # bare copies finish them
        boto3.client("sqs").send_message(QueueUrl=engine.queue_url, MessageBody=json.dumps(
            {"tenant": "tenant-a", "batch_id": batch_id, "chunk": n}))
    engine.drain()                                          # 0, 1, then 2, 3, then 4 by their lanes
    assert engine.workflow.successes
    engine.finalize(batch_id, "completed")
    assert engine.batch(batch_id).completed == 23
