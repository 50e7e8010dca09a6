"""Finalize a batch: close its chunks, assemble the result files, register them, set counts, usage and
the terminal status.

Results are assembled from S3 alone (each chunk's chain of `.seg.json` records from its first line),
so a segment a crashed worker wrote but never committed is included exactly once too. Past the end of
a chunk's chain, a line a worker got an answer for (kept in the chunk's `ahead.jsonl`) is reported with
that answer; the others never ran and become batch_cancelled / batch_expired / batch_failed lines. Lines keep
input order. Safe to re-run after a crash: file ids are planned and stored on the batch first, and the
files are rewritten under the same keys.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchgate import ids
from batchgate.contract import WorkflowError
from batchgate.domain import status as st
from batchgate.domain.chunk_lines import input_key
from batchgate.domain.files import retention_tag
from batchgate.domain.jsonl import iter_lines
from batchgate.domain.ports import BatchRepository, FileWriter, FinalizePorts
from batchgate.domain.results import not_run_line
from batchgate.models.engine import USAGE_FIELDS, ChunkRecord, FinalizeStepOutput, Usage
from batchgate.models.records import BatchRecord, BatchStatus, ResultFileIds
from batchgate.observability import logger

DEFAULT_OUTPUT_SECONDS = 30 * 86400
# Lambda reports an exception's class name as the error type the state machine's Retry matches, so
# the class is named "Batch.ChunksBusy" (`error_name` says the same for local mode).
ChunksBusy = type(WorkflowError.CHUNKS_BUSY, (Exception,), {
    "__doc__": "Workers still hold chunk leases: retry finalize later.", "error_name": WorkflowError.CHUNKS_BUSY})


@dataclass(frozen=True)
class FinalizeLimits:
    lease_wait_seconds: float = 60.0
    poll_seconds: float = 1.0


def failure_error(error: dict[str, Any] | None, assembled: bool) -> dict[str, Any]:
    """The entry in the batch's `errors` when a step broke past its retries. Names the error's type
    only: a Cause can carry internals (stack traces) that are not the tenant's to read."""
    kind = str((error or {}).get("Error") or "unknown error")[:100]
    kept = ("Lines that ran are in the output and error files; the others were not executed."
            if assembled else "Its result files could not be assembled.")
    return {"code": "batch_failed", "param": None, "line": None,
            "message": f"The batch could not be processed to the end: an internal step failed ({kind}). {kept}"}


def _target(batch: BatchRecord, reason: str, batches: BatchRepository) -> tuple[BatchStatus, BatchRecord]:
    """The terminal status this run ends in (moving in_progress -> finalizing first when completing)."""
    tenant, batch_id = batch.tenant, batch.id
    for _ in range(5):
        current = batch.status
        if current in st.TERMINAL or current == "cancelling":
            return ("cancelled" if current == "cancelling" else current), batch
        if reason in ("failed", "abort"):
            return "failed", batch
        if current == "finalizing":
            return "completed", batch
        if reason == "expired":
            return "expired", batch
        to: BatchStatus = "finalizing" if reason == "completed" else "cancelling"
        moved = st.transition(batches, tenant, batch_id, to)
        batch = moved or _reread(batches, tenant, batch_id)
    raise RuntimeError(f"batch {batch_id} kept changing status")


def _reread(batches: BatchRepository, tenant: str, batch_id: str) -> BatchRecord:
    batch = batches.get(tenant, batch_id, consistent=True)
    if batch is None:
        raise RuntimeError(f"batch {batch_id} not found")
    return batch


def _seal_all(batch_id: str, ports: FinalizePorts, limits: FinalizeLimits) -> list[ChunkRecord]:
    deadline = time.monotonic() + limits.lease_wait_seconds
    while True:
        chunks = ports.chunks.list(batch_id)
        busy = [c.n for c in chunks if c.state == "open" and not ports.chunks.seal(batch_id, c.n, time.time())]
        if not busy:
            return ports.chunks.list(batch_id)
        if time.monotonic() >= deadline:
            raise ChunksBusy(f"chunks {busy[:10]} of {batch_id} are still leased by a worker")
        time.sleep(limits.poll_seconds)


@dataclass
class _Totals:
    completed: int = 0
    failed: int = 0
    not_run: int = 0
    usage: Usage = field(default_factory=Usage)


def _past_the_chain(batch: BatchRecord, ports: FinalizePorts, chunk: ChunkRecord, start: int,
                    start_byte: int, reason: str, t: _Totals, out_w: FileWriter, err_w: FileWriter) -> None:
    """Lines [start, end) of a chunk that no segment holds: their kept answer, else a not-run line."""
    # A chunk no run ever claimed has no kept answers (only a lease holder writes them).
    ahead = {} if chunk.claims == 0 else ports.segments.get_ahead(batch.id, chunk.n)

    def one(index: int, custom_id: str | None) -> None:
        answer = ahead.get(index)
        if answer is None:
            err_w.write(not_run_line(custom_id, reason))
            t.not_run += 1
        elif answer.ok:
            out_w.write(answer.data)
            t.completed += 1
            t.usage = t.usage + answer.usage
        else:
            err_w.write(answer.data)
            t.failed += 1

    try:
        data = ports.files.read_range(input_key(batch, ports.files), start_byte, chunk.byte_end)
    except Exception:
        logger.exception("input unreadable; writing not-run lines without custom_id")
        for index in range(start, chunk.end_line):
            one(index, None)
        return
    for line in iter_lines([data], offset=start_byte, first_index=start):
        try:
            custom_id = orjson.loads(line.data).get("custom_id")
        except (orjson.JSONDecodeError, AttributeError):
            custom_id = None
        one(line.index, custom_id)


def _assemble(batch: BatchRecord, chunks: list[ChunkRecord], ports: FinalizePorts, reason: str,
              out_w: FileWriter, err_w: FileWriter) -> _Totals:
    t = _Totals()
    batch_id = batch.id
    for c in chunks:
        start, start_byte = c.first_line, c.byte_start
        while start < c.end_line and c.claims != 0:  # a chunk never claimed has no segments
            seg = ports.segments.get_record(batch_id, c.n, start)
            if seg is None:
                break
            for kind, size, w in (("out.jsonl", seg.out_bytes, out_w), ("err.jsonl", seg.err_bytes, err_w)):
                if size:
                    for block in ports.segments.stream_data(batch_id, c.n, seg, kind):
                        w.write(block)
            t.completed += seg.completed
            t.failed += seg.failed
            t.usage = t.usage + seg.usage
            start, start_byte = seg.end_line, seg.end_byte
        if start < c.end_line:
            if c.state == "done":
                logger.error("done chunk with a broken segment chain", extra={"batch_id": batch_id, "chunk": c.n})
            _past_the_chain(batch, ports, c, start, start_byte, reason, t, out_w, err_w)
    return t


def _plan_file_ids(batch: BatchRecord, batches: BatchRepository) -> ResultFileIds:
    plan = batch.result_file_ids
    if plan is None:
        plan = ResultFileIds(output=ids.file_id(), error=ids.file_id())
        batches.update_fields(batch.tenant, batch.id, {"result_file_ids": plan.model_dump()})
    return plan


def _output_seconds(batch: BatchRecord) -> int:
    return batch.output_expires_after_seconds or DEFAULT_OUTPUT_SECONDS


def _register(ports: FinalizePorts, batch: BatchRecord, file_id: str, kind: str, size: int, now: int) -> None:
    tenant = batch.tenant
    if ports.files.get(tenant, file_id):
        return  # registered by a run that crashed later
    ports.files.register(tenant, file_id=file_id, filename=f"{batch.id}_{kind}.jsonl",
                         purpose="batch_output", bytes=size, s3_key=ports.files.file_key(tenant, file_id),
                         created_at=now, expires_at=now + _output_seconds(batch))


def finalize_batch(tenant: str, batch_id: str, reason: str, ports: FinalizePorts,
                   limits: FinalizeLimits = FinalizeLimits(),
                   error: dict[str, Any] | None = None) -> FinalizeStepOutput:
    batch = _reread(ports.batches, tenant, batch_id)
    target, batch = _target(batch, reason, ports.batches)
    if batch.status in st.TERMINAL:
        return FinalizeStepOutput(batch_id=batch_id, tenant=tenant, status=batch.status)
    if reason == "abort":  # the last resort: the status only, so that the batch ends whatever broke
        errors = {"errors": [failure_error(error, assembled=False)]} if target == "failed" else {}
        return FinalizeStepOutput(batch_id=batch_id, tenant=tenant,
                                  status=_terminal(tenant, batch_id, target, errors, ports.batches))
    plan = _plan_file_ids(batch, ports.batches)
    chunks = _seal_all(batch_id, ports, limits)
    not_run_reason = {"cancelled": "cancelled", "failed": "failed"}.get(target, "expired")
    started = int(time.time())
    tagging = retention_tag(started, started + _output_seconds(batch))
    out_w = ports.files.writer(ports.files.file_key(tenant, plan.output), tagging=tagging)
    err_w = ports.files.writer(ports.files.file_key(tenant, plan.error), tagging=tagging)
    try:
        totals = _assemble(batch, chunks, ports, not_run_reason, out_w, err_w)
        out_size = out_w.close() if totals.completed else 0
        err_size = err_w.close() if totals.failed + totals.not_run else 0
    except BaseException:
        out_w.abort()
        err_w.abort()
        raise
    now = int(time.time())
    output_id = plan.output if totals.completed else None
    error_id = plan.error if totals.failed + totals.not_run else None
    if output_id:
        _register(ports, batch, output_id, "output", out_size, now)
    if error_id:
        _register(ports, batch, error_id, "error", err_size, now)
    extra: dict[str, Any] = {"output_file_id": output_id, "error_file_id": error_id, "completed": totals.completed,
             "failed": totals.failed, **{f: getattr(totals.usage, f) for f in USAGE_FIELDS}}
    if target == "failed":
        extra["errors"] = [failure_error(error, assembled=True)]
    final = _terminal(tenant, batch_id, target, extra, ports.batches)
    if final in st.TERMINAL:
        ports.segments.delete_batch(batch_id)
    return FinalizeStepOutput(batch_id=batch_id, tenant=tenant, status=final)


def _terminal(tenant: str, batch_id: str, target: BatchStatus, extra: dict[str, Any],
              batches: BatchRepository) -> str:
    for _ in range(5):
        if st.transition(batches, tenant, batch_id, target, extra=extra):
            return target
        current = _reread(batches, tenant, batch_id).status
        if current in st.TERMINAL:
            return current
        target = "cancelled" if current == "cancelling" else target
    raise RuntimeError(f"batch {batch_id} could not reach a terminal status")
