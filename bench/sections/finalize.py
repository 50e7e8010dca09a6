"""3. Finalization: the real finalize_batch (domain/finalize.py with its S3/DynamoDB adapters, moto
server out of process) over chunk results prepared in the layout of docs/design.md: per chunk one
segment `work/<batch>/<chunk>/<start>.out.jsonl|.err.jsonl|.seg.json` (no writer in the key), chunk items `done`."""
from __future__ import annotations

import time

from bench.data import result_line
from bench.engine_setup import BUCKET, TENANT, new_batch, stores
from bench.measure import cpu_seconds, peak_bytes
from bench.moto_server import MotoServer, create_engine_resources
from bench.report import SectionResult, at_most, info

MB = 1_000_000
LINE_BYTES = 4096
LINES_PER_CHUNK = 500
FAIL_EVERY = 100  # 1% of lines go to the error file


def _prepare(total_bytes: int) -> tuple[str, int, int]:
    """A batch in_progress whose chunks are all done with their segments in S3. Returns
    (batch_id, result bytes, lines)."""
    from batchgate import aws
    from batchgate.adapters.batch_store import chunk_pk, chunk_sk
    from batchgate.models.engine import SegmentRecord, Usage

    per_line = len(result_line(0, LINE_BYTES))
    lines = max(1, total_bytes // per_line)
    # The input file only has to exist (finalize reads it for never-run lines, of which there are none).
    tiny_input = b"".join(b'{"custom_id":"request-%07d"}\n' % i for i in range(lines))
    batch_id, specs = new_batch(tiny_input, LINES_PER_CHUNK)
    batches, _, segments, _ = stores()
    table = aws.resource("dynamodb").Table("state")
    s3 = aws.client("s3")
    size = 0
    for c in specs:
        out, err = bytearray(), bytearray()
        for i in range(c.first_line, c.end_line):
            (err if i % FAIL_EVERY == FAIL_EVERY - 1 else out).extend(result_line(i, LINE_BYTES))
        failed = sum(1 for i in range(c.first_line, c.end_line) if i % FAIL_EVERY == FAIL_EVERY - 1)
        seg = SegmentRecord(start_line=c.first_line, end_line=c.end_line, start_byte=c.byte_start,
                            end_byte=c.byte_end, completed=c.end_line - c.first_line - failed, failed=failed,
                            out_bytes=len(out), err_bytes=len(err),
                            usage=Usage(input_tokens=900 * len(out), output_tokens=250, total_tokens=1150))
        segments.put_data(batch_id, c.n, c.first_line, bytes(out), bytes(err))
        segments.put_record(batch_id, c.n, seg)
        size += len(out) + len(err)
        table.update_item(Key={"pk": chunk_pk(batch_id), "sk": chunk_sk(c.n)},
                          UpdateExpression="SET #s = :done, next_line = :nl, next_byte = :nb, #g = :one, "
                                           "claims = :one",   # as one worker run leaves it
                          ExpressionAttributeNames={"#s": "state", "#g": "segments"},
                          ExpressionAttributeValues={":done": "done", ":nl": c.end_line, ":nb": c.byte_end,
                                                     ":one": 1})
    del out, err
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"work/{batch_id}/", MaxKeys=1)["KeyCount"]
    return batch_id, size, lines


def _finalize(batch_id: str):
    from batchgate.domain.finalize import FinalizeLimits, finalize_batch
    from batchgate.domain.ports import FinalizePorts

    batches, chunks, segments, files = stores()
    return finalize_batch(TENANT, batch_id, "completed", FinalizePorts(batches, chunks, segments, files),
                          FinalizeLimits(lease_wait_seconds=5))


def _measure(total_bytes: int) -> dict:
    batch_id, size, lines = _prepare(total_bytes)
    t, cpu = time.perf_counter(), cpu_seconds()
    out = _finalize(batch_id)
    seconds, cpu = time.perf_counter() - t, cpu_seconds() - cpu
    batch = stores()[0].get(TENANT, batch_id, consistent=True)
    if out.status != "completed" or batch.completed + batch.failed != lines:
        raise RuntimeError(f"finalize ended {out.status} with counts {batch.completed}/{batch.failed}")
    # Memory: a second, identical batch under tracemalloc (which slows allocation, so not timed).
    batch_id2, _, _ = _prepare(total_bytes)
    peak = peak_bytes(lambda: _finalize(batch_id2))
    return {"mb": size / MB, "seconds": seconds, "cpu": cpu, "peak_mb": peak / MB, "lines": lines}


def run(small_mb: int, big_mb: int) -> SectionResult:
    res = SectionResult(f"3. Finalization of {small_mb} MB and {big_mb} MB of chunk results")
    with MotoServer():
        create_engine_resources()
        small = _measure(small_mb * MB)
        big = _measure(big_mb * MB)
    res.figures += [
        info("finalize_small_mb", small["mb"], "MB"),
        info("finalize_small_mb_s", small["mb"] / small["seconds"], "MB/s"),
        info("finalize_small_peak_mb", small["peak_mb"], "MB"),
        info("finalize_big_mb", big["mb"], "MB"),
        info("finalize_big_mb_s", big["mb"] / big["seconds"], "MB/s"),
        info("finalize_big_peak_mb", big["peak_mb"], "MB"),
        info("finalize_big_mb_per_cpu_s", big["mb"] / max(big["cpu"], 1e-9), "MB/CPU-s"),
        at_most("finalize_peak_ratio", big["peak_mb"] / small["peak_mb"], 1.5),
    ]
    res.notes += [
        f"result lines of ~{LINE_BYTES} B, {LINES_PER_CHUNK} per chunk, one segment per chunk, 1% to the error file; "
        f"{small['lines']:,} and {big['lines']:,} lines",
        "MB/s is wall time, much of it waiting on the moto server; MB/CPU-s counts only this process's "
        "CPU (what finalize itself costs)",
        "peak = tracemalloc peak of Python allocations during finalize (moto's copy of the bytes lives in "
        "its own process and is not counted)",
    ]
    return res
