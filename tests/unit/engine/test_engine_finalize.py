"""Finalize with in-memory ports: committed segments are concatenated in order, lines past a chunk's
chain become not-run lines, the files are registered, and the batch ends with counts and usage."""
from __future__ import annotations

import json

import pytest
from engine_fakes import MemoryBatches, MemoryChunks, MemoryFiles, MemorySegments

from batchgate.domain import finalize
from batchgate.domain.ports import FinalizePorts
from batchgate.models.engine import ChunkRecord, SegmentRecord, Usage
from batchgate.models.records import BatchRecord

LINES = [json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                     "body": {"model": "m"}}).encode() + b"\n" for i in range(4)]
INPUT = b"".join(LINES)
CUT = len(LINES[0]) + len(LINES[1])   # the byte after line 1
FAST = finalize.FinalizeLimits(lease_wait_seconds=0.0, poll_seconds=0.0)


def _world(status: str, lease_until: float | None = None):
    batch = BatchRecord(id="batch_1", tenant="t", endpoint="/v1/chat/completions", input_file_id="file-in",
                        completion_window="24h", status=status, created_at=1, expires_at=10**10, total=4,
                        chunk_count=1, input_s3_key="input")
    chunk = ChunkRecord(n=0, first_line=0, end_line=4, byte_start=0, byte_end=len(INPUT), next_line=2,
                        next_byte=CUT, lease_owner="w" if lease_until else None, lease_until=lease_until)
    segments = MemorySegments()
    segments.add(0, SegmentRecord(start_line=0, end_line=2, start_byte=0, end_byte=CUT, completed=1, failed=1,
                                  out_bytes=6, err_bytes=6, usage=Usage(input_tokens=3, total_tokens=5)),
                 out=b'{"o0"}\n', err=b'{"e1"}\n')
    ports = FinalizePorts(batches=MemoryBatches(batch), chunks=MemoryChunks(chunk), segments=segments,
                          files=MemoryFiles({"input": INPUT}))
    return ports


def test_a_cancelled_batch_keeps_what_ran_and_reports_the_rest_as_cancelled():
    ports = _world("cancelling")

    out = finalize.finalize_batch("t", "batch_1", "cancelled", ports, FAST)

    batch = ports.batches.get("t", "batch_1")
    assert out.status == batch.status == "cancelled"
    assert ports.chunks.list("batch_1")[0].state == "sealed"
    assert ports.files.objects[ports.files.file_key("t", batch.output_file_id)] == b'{"o0"}\n'
    err = ports.files.objects[ports.files.file_key("t", batch.error_file_id)].splitlines()
    assert err[0] == b'{"e1"}'
    assert [(json.loads(x)["custom_id"], json.loads(x)["error"]["code"]) for x in err[1:]] == \
        [("c2", "batch_cancelled"), ("c3", "batch_cancelled")]
    assert (batch.completed, batch.failed, batch.input_tokens, batch.total_tokens) == (1, 1, 3, 5)
    assert set(ports.files.registered) == {batch.output_file_id, batch.error_file_id}
    assert ports.segments.deleted


def test_a_chunk_still_leased_by_a_worker_makes_finalize_retry_later():
    ports = _world("in_progress", lease_until=10**10)

    with pytest.raises(finalize.ChunksBusy):
        finalize.finalize_batch("t", "batch_1", "completed", ports, FAST)

    assert ports.batches.get("t", "batch_1").status == "finalizing"   # not terminal: the retry finishes it
    assert ports.files.registered == {}
