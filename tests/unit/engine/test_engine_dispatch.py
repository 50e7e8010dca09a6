"""Dispatch with in-memory ports: the token is parked only on an in_progress batch, then one pointer
goes out per chunk; a batch stopped before Dispatch fails the token itself."""
from __future__ import annotations

from engine_fakes import MemoryBatches, MemoryQueue, MemoryWorkflow

from batchgate.domain.batches import CANCEL_ERROR
from batchgate.domain.dispatch import dispatch_batch
from batchgate.models.records import BatchRecord


def _batch(status: str, chunk_count: int | None = 3) -> BatchRecord:
    return BatchRecord(id="batch_1", tenant="t", endpoint="/v1/chat/completions", input_file_id="file-1",
                       completion_window="24h", status=status, created_at=1, expires_at=10**10,
                       chunk_count=chunk_count)


def test_an_in_progress_batch_parks_the_token_and_sends_a_pointer_per_chunk():
    batches, workflow, queue = MemoryBatches(_batch("in_progress")), MemoryWorkflow(), MemoryQueue()

    out = dispatch_batch("t", "batch_1", "token-1", batches=batches, workflow=workflow, queue=queue)

    assert out.chunks_sent == 3
    assert [(m.tenant, m.batch_id, m.chunk) for m in queue.sent] == [("t", "batch_1", n) for n in range(3)]
    assert batches.get("t", "batch_1").task_token == "token-1"
    assert workflow.failed == []


def test_a_batch_cancelled_before_dispatch_fails_the_token_and_sends_nothing():
    batches, workflow, queue = MemoryBatches(_batch("cancelling")), MemoryWorkflow(), MemoryQueue()

    out = dispatch_batch("t", "batch_1", "token-1", batches=batches, workflow=workflow, queue=queue)

    assert out.chunks_sent == 0 and queue.sent == []
    assert batches.get("t", "batch_1").task_token is None
    assert [(token, error) for token, error, _ in workflow.failed] == [("token-1", CANCEL_ERROR)]


def test_with_lanes_only_the_first_chunk_of_each_lane_is_sent():
    batches, workflow, queue = MemoryBatches(_batch("in_progress", chunk_count=5)), MemoryWorkflow(), MemoryQueue()

    out = dispatch_batch("t", "batch_1", "token-1", batches=batches, workflow=workflow, queue=queue, lanes=2)

    assert out.chunks_sent == 2
    assert [m.chunk for m in queue.sent] == [0, 1]
    assert batches.get("t", "batch_1").chunk_lanes == 2   # the workers continue each lane from the batch


def test_lanes_at_or_above_the_chunk_count_send_every_chunk_without_lanes():
    batches, workflow, queue = MemoryBatches(_batch("in_progress", chunk_count=3)), MemoryWorkflow(), MemoryQueue()

    dispatch_batch("t", "batch_1", "token-1", batches=batches, workflow=workflow, queue=queue, lanes=3)

    assert [m.chunk for m in queue.sent] == [0, 1, 2]
    assert batches.get("t", "batch_1").chunk_lanes is None
