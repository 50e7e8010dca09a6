"""Shapes the batch engine exchanges with the state machine and the chunk queue, and the records it
keeps (chunk items in DynamoDB, segment commit records in S3). Layout in docs/design.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

Outcome = Literal["valid", "failed", "cancelled"]
# "failed": a step broke past its retries (what ran is kept); "abort": Finalize itself broke, so the
# batch only takes its terminal status, without result files.
FinalizeReason = Literal["completed", "cancelled", "expired", "failed", "abort"]
USAGE_FIELDS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens")


class ValidateStepInput(BaseModel):
    batch_id: str
    tenant: str


class ValidateStepOutput(BaseModel):
    batch_id: str
    tenant: str
    outcome: Outcome
    seconds_left: int


class DispatchStepInput(BaseModel):
    batch_id: str
    tenant: str
    task_token: str


class DispatchStepOutput(BaseModel):
    batch_id: str
    tenant: str
    chunks_sent: int


class FinalizeStepInput(BaseModel):
    batch_id: str
    tenant: str
    reason: FinalizeReason
    error: dict[str, Any] | None = None  # the caught Step Functions error {"Error", "Cause"} on the failure paths


class FinalizeStepOutput(BaseModel):
    batch_id: str
    tenant: str
    status: str


class ChunkMessage(BaseModel):
    """SQS pointer to one chunk; the resume point lives in the chunk item, so a hand-back is the same
    message."""
    tenant: str
    batch_id: str
    chunk: int


class ChunkCompletionOutput(BaseModel):
    """What the worker that finishes the last chunk sends as the Dispatch task's result."""
    batch_id: str
    tenant: str
    reason: FinalizeReason = "completed"


class ChunkSpec(BaseModel):
    """One slice of the input file: lines [first_line, end_line) (0-based), bytes [byte_start, byte_end)."""
    n: int
    first_line: int
    end_line: int
    byte_start: int
    byte_end: int


class ChunkRecord(ChunkSpec):
    """The chunk item: its slice plus the cursor of what is committed, state and lease."""
    next_line: int
    next_byte: int
    state: Literal["open", "done", "sealed"] = "open"
    segments: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    # Leases ever taken (ChunkStore.claim): 0, never run, so nothing of it is in S3; 1 right after a
    # claim, this run is the chunk's first, so no earlier run can have left segments or kept answers to
    # look for. None: an item written before the count existed (a claim then counts it as claimed before).
    claims: int | None = None


class Usage(BaseModel):
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f: getattr(self, f) + getattr(other, f) for f in USAGE_FIELDS})


@dataclass(slots=True)
class AnsweredLine:
    """One line's result line (`data`, for the output file when `ok`, else the error file), its usage
    and the byte just past its input line: what a worker holds before a segment commits it."""
    ok: bool
    data: bytes
    usage: Usage
    end: int


class SegmentRecord(BaseModel):
    """`.seg.json`: the commit record of one segment of a chunk's results (written last, create-only).
    Lines [start_line, end_line) of the chunk are in the `.out.jsonl` / `.err.jsonl` its `writer` (the
    run's lease owner) put: data keys are per writer, so a late write by a run that lost its lease can
    never change the bytes a committed record names. "" is the key without a writer (older segments)."""
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    completed: int = 0
    failed: int = 0
    out_bytes: int = 0
    err_bytes: int = 0
    usage: Usage = Field(default_factory=Usage)
    writer: str = ""
