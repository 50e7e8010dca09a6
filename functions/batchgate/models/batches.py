"""The Batch object as OpenAI's SDK sees it (reference §1): every key present, unset ones null.

`batch_object` turns a `BatchRecord` into that shape and drops everything internal (tenant, task
token, chunk bookkeeping), so nothing leaks by accident: only declared fields go out.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from batchgate.models.records import USAGE_FIELDS, BatchRecord, BatchStatus
from batchgate.models.pages import fit_page

# Statuses whose result files exist, so the summed usage is final and worth showing.
_USAGE_STATUSES = frozenset({"completed", "cancelled", "expired"})


class BatchRequestCountsResponse(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class InputTokensDetailsResponse(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetailsResponse(BaseModel):
    reasoning_tokens: int = 0


class BatchUsageResponse(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetailsResponse
    output_tokens: int
    output_tokens_details: OutputTokensDetailsResponse
    total_tokens: int


class BatchErrorResponse(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrorsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchErrorResponse]


class BatchResponse(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrorsResponse | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCountsResponse
    usage: BatchUsageResponse | None = None
    metadata: dict[str, str] | None = None


class BatchListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


# The largest count a reader is given: exact in JSON parsers that use doubles (JavaScript) and always
# serialisable. Stored sums are bounded far below it (results.MAX_TOKENS_PER_LINE); this guards reads
# of anything stored before that bound, so a bad number never makes a tenant's reads fail.
MAX_COUNT = 2**53 - 1


def _count(value: Any) -> int:
    try:
        return min(max(int(value or 0), 0), MAX_COUNT)
    except (TypeError, ValueError):
        return 0


def _usage(record: BatchRecord) -> BatchUsageResponse | None:
    if record.status not in _USAGE_STATUSES or not record.has_usage():
        return None
    n = {f: _count(getattr(record, f)) for f in USAGE_FIELDS}
    return BatchUsageResponse(
        input_tokens=n["input_tokens"],
        input_tokens_details=InputTokensDetailsResponse(cached_tokens=n["cached_tokens"]),
        output_tokens=n["output_tokens"],
        output_tokens_details=OutputTokensDetailsResponse(reasoning_tokens=n["reasoning_tokens"]),
        total_tokens=n["total_tokens"])


def batch_object(record: BatchRecord) -> dict[str, Any]:
    """A stored batch -> OpenAI's Batch object (a plain dict, ready for JSON)."""
    fields = {k: getattr(record, k) for k in BatchResponse.model_fields if k in BatchRecord.model_fields}
    model = BatchResponse(
        **{**fields,
           "errors": {"object": "list", "data": record.errors} if record.errors else None,
           "request_counts": BatchRequestCountsResponse(
               total=_count(record.total), completed=_count(record.completed), failed=_count(record.failed)),
           "usage": _usage(record)})
    return model.model_dump(mode="json")


def batch_list(records: list[BatchRecord], has_more: bool) -> dict[str, Any]:
    data, has_more = fit_page([batch_object(r) for r in records], has_more)
    return BatchListResponse(data=data, first_id=data[0]["id"] if data else None,
                             last_id=data[-1]["id"] if data else None,
                             has_more=has_more).model_dump(mode="json")
