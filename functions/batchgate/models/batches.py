"""The Batch object as OpenAI's SDK sees it (reference §1): every key present, unset ones null; and
the body of POST /v1/batches (reference §2.1, §2.2).

`batch_object` turns a `BatchRecord` into that shape and drops everything internal (tenant, task
token, chunk bookkeeping), so nothing leaks by accident: only declared fields go out.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from batchgate import errors, ids
from batchgate.models.pages import fit_page
from batchgate.models.records import USAGE_FIELDS, BatchRecord, BatchStatus
from batchgate.models.requests import EXPIRES_MAX_SECONDS, EXPIRES_MIN_SECONDS, rejected

ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
             "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")
COMPLETION_WINDOWS = ("24h",)
EXPIRY_ANCHORS = ("created_at",)
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100


# -- the request ---------------------------------------------------------------------------------
def _supported(allowed: tuple[str, ...]) -> AfterValidator:
    """A string that must be one of `allowed`, refused in OpenAI's words (a Literal would refuse a
    non-string as a value, where OpenAI says invalid_type)."""
    quoted = [f"'{a}'" for a in allowed]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]

    def check(value: str) -> str:
        if value not in allowed:
            raise rejected("invalid_value", f"Invalid value: '{value}'. Supported values are: {listed}.")
        return value
    return AfterValidator(check)


def _metadata(value: dict[str, Any]) -> dict[str, str]:
    """OpenAI's metadata rules, in its order: the count, then each pair's key and value."""
    if len(value) > METADATA_MAX_PAIRS:
        raise rejected("object_above_max_properties",
                       f"Invalid 'metadata': too many properties. Expected an object with at most "
                       f"{METADATA_MAX_PAIRS} properties, but got an object with {len(value)} properties "
                       "instead.")
    for key, item in value.items():
        if not key:
            raise rejected("invalid_value", "Invalid property name in 'metadata': keys must be non-empty strings.")
        if len(key) > METADATA_KEY_MAX:
            raise rejected("property_name_above_max_length",
                           f"Invalid property name in 'metadata': '{key}' is too long. Expected a string "
                           f"with maximum length {METADATA_KEY_MAX}, but got a string with length "
                           f"{len(key)} instead.", at=key)
        if not isinstance(item, str):
            raise rejected("invalid_type", errors.invalid_type(f"metadata.{key}", "a string", item).message,
                           at=key)
        if len(item) > METADATA_VALUE_MAX:
            raise rejected("string_above_max_length",
                           f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                           f"length {METADATA_VALUE_MAX}, but got a string with length {len(item)} instead.",
                           at=key)
    return value


def _seconds_in_bounds(value: OutputExpiresAfterRequest) -> OutputExpiresAfterRequest:
    param, seconds = "output_expires_after.seconds", value.seconds
    if seconds < EXPIRES_MIN_SECONDS:
        raise rejected("integer_below_min_value",
                       f"Invalid '{param}': integer below minimum value. Expected a value >= "
                       f"{EXPIRES_MIN_SECONDS}, but got {seconds} instead.", at="seconds")
    if seconds > EXPIRES_MAX_SECONDS:
        raise rejected("integer_above_max_value",
                       f"Invalid '{param}': integer above maximum value. Expected a value <= "
                       f"{EXPIRES_MAX_SECONDS}, but got {seconds} instead.", at="seconds")
    return value


class _BatchBody(BaseModel):
    """How POST /v1/batches reads its JSON (reference §2.2): no coercion ("3600" is not an integer),
    a null counts as absent (so a required one is missing), unknown keys are ignored."""
    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class OutputExpiresAfterRequest(_BatchBody):
    anchor: Annotated[str, _supported(EXPIRY_ANCHORS)]
    seconds: int


class BatchCreateRequest(_BatchBody):
    """The body of POST /v1/batches. Fields are checked in this order and the first problem is the
    answer; the input file's existence and purpose are the domain's to check."""
    input_file_id: str
    endpoint: Annotated[str, _supported(ENDPOINTS)]
    completion_window: Annotated[str, _supported(COMPLETION_WINDOWS)]
    metadata: Annotated[dict[str, Any], AfterValidator(_metadata)] | None = None
    output_expires_after: Annotated[OutputExpiresAfterRequest, AfterValidator(_seconds_in_bounds)] | None = None


def _limit(raw: str | None) -> int:
    """Whatever Python's int() reads ("+5", " 5") within 1..100; absent or empty is the default."""
    if raw is None or raw == "":
        return LIST_LIMIT_DEFAULT
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= LIST_LIMIT_MAX:
        raise rejected("invalid_value", f"Invalid value for 'limit': expected an integer between 1 and "
                                        f"{LIST_LIMIT_MAX}, but got '{raw}' instead.")
    return value


def _after(raw: str | None) -> str | None:
    if not raw:
        return None
    if not ids.BATCH_ID.match(raw):
        raise rejected("invalid_value", f"Invalid value for 'after': '{raw}' is not a batch id.")
    return raw


class BatchListRequest(BaseModel):
    """Query string of GET /v1/batches (newest first; `after` is the last id of the previous page)."""
    limit: Annotated[int, BeforeValidator(_limit)] = LIST_LIMIT_DEFAULT
    after: Annotated[str | None, AfterValidator(_after)] = None


# -- the response --------------------------------------------------------------------------------

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
