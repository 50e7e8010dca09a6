"""Batches: create (synchronous checks, then store and start the workflow), list, retrieve, cancel.

Pure logic: stores and the workflow arrive as ports; errors are batchgate.errors (reference §2.2, §5,
§12 fix the messages, params and codes).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import orjson

from batchgate import errors, ids
from batchgate.contract import WorkflowError
from batchgate.domain import status as st
from batchgate.domain.ports import BatchRepository, WorkflowPort
from batchgate.models.records import BatchRecord

ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
             "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")
COMPLETION_WINDOWS = ("24h",)
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
OUTPUT_EXPIRY_MIN = 3600
OUTPUT_EXPIRY_MAX = 2592000
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100
START_FAILED_ERROR = {"code": "batch_start_failed", "param": None, "line": None,
                      "message": "The batch could not be started. Please create it again."}


# -- ports ------------------------------------------------------------------------------------
class FileLookup(Protocol):
    def get(self, tenant: str, file_id: str) -> dict[str, Any] | None: ...


# -- create -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateBatchRequest:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after_seconds: int | None = None

    def fingerprint(self) -> str:
        """Identifies the request's content, so a reused Idempotency-Key with other content is refused."""
        return hashlib.sha256(orjson.dumps(self.__dict__, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _supported(value: object, allowed: Iterable[str]) -> str:
    quoted = [f"'{a}'" for a in allowed]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]
    return f"Invalid value: '{value}'. Supported values are: {listed}."


def _required_string(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None:
        raise errors.missing(name)
    if not isinstance(value, str):
        raise errors.invalid_type(name, "a string", value)
    return value


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_type("metadata", "an object", value)
    if len(value) > METADATA_MAX_PAIRS:
        raise errors.InvalidRequest(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(value)} properties instead.",
            param="metadata", code="object_above_max_properties")
    for key, item in value.items():
        param = f"metadata.{key}"
        if not key:
            raise errors.InvalidRequest(
                "Invalid property name in 'metadata': keys must be non-empty strings.",
                param="metadata", code="invalid_value")
        if len(key) > METADATA_KEY_MAX:
            raise errors.InvalidRequest(
                f"Invalid property name in 'metadata': '{key}' is too long. Expected a string with "
                f"maximum length {METADATA_KEY_MAX}, but got a string with length {len(key)} instead.",
                param=param, code="property_name_above_max_length")
        if not isinstance(item, str):
            raise errors.invalid_type(param, "a string", item)
        if len(item) > METADATA_VALUE_MAX:
            raise errors.InvalidRequest(
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{METADATA_VALUE_MAX}, but got a string with length {len(item)} instead.",
                param=param, code="string_above_max_length")
    return dict(value)


def _output_expires_after(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_type("output_expires_after", "an object", value)
    anchor, seconds = value.get("anchor"), value.get("seconds")
    if anchor is None:
        raise errors.missing("output_expires_after.anchor")
    if not isinstance(anchor, str):
        raise errors.invalid_type("output_expires_after.anchor", "a string", anchor)
    if anchor != "created_at":
        raise errors.invalid_value("output_expires_after.anchor", _supported(anchor, ["created_at"]))
    if seconds is None:
        raise errors.missing("output_expires_after.seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise errors.invalid_type("output_expires_after.seconds", "an integer", seconds)
    param = "output_expires_after.seconds"
    if seconds < OUTPUT_EXPIRY_MIN:
        raise errors.InvalidRequest(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {OUTPUT_EXPIRY_MIN}, "
            f"but got {seconds} instead.", param=param, code="integer_below_min_value")
    if seconds > OUTPUT_EXPIRY_MAX:
        raise errors.InvalidRequest(
            f"Invalid '{param}': integer above maximum value. Expected a value <= {OUTPUT_EXPIRY_MAX}, "
            f"but got {seconds} instead.", param=param, code="integer_above_max_value")
    return seconds


def parse_create(body: Any) -> CreateBatchRequest:
    """The synchronous checks of POST /v1/batches, in parameter order; the first problem wins."""
    if not isinstance(body, dict):
        raise errors.invalid_type("body", "an object", body)
    input_file_id = _required_string(body, "input_file_id")
    endpoint = _required_string(body, "endpoint")
    if endpoint not in ENDPOINTS:
        raise errors.invalid_value("endpoint", _supported(endpoint, ENDPOINTS))
    window = _required_string(body, "completion_window")
    if window not in COMPLETION_WINDOWS:
        raise errors.invalid_value("completion_window", _supported(window, COMPLETION_WINDOWS))
    return CreateBatchRequest(input_file_id=input_file_id, endpoint=endpoint, completion_window=window,
                              metadata=_metadata(body.get("metadata")),
                              output_expires_after_seconds=_output_expires_after(
                                  body.get("output_expires_after")))


def check_input_file(tenant: str, file_id: str, files: FileLookup) -> dict:
    record = files.get(tenant, file_id) if ids.FILE_ID.match(file_id) else None
    if record is None:
        raise errors.NotFound(f"No such File object: {file_id}", param="input_file_id")
    purpose = record.get("purpose")
    if purpose != "batch":
        raise errors.invalid_value(
            "input_file_id",
            f"Invalid input file '{file_id}': its purpose is '{purpose}', but a batch input file "
            "must have purpose 'batch'.")
    return record


def new_batch_record(tenant: str, request: CreateBatchRequest, *, now: int, window_seconds: int,
                     batch_id: str | None = None) -> BatchRecord:
    """A `validating` batch: counts at zero, usage absent (workers ADD to it)."""
    return BatchRecord(
        id=batch_id or ids.batch_id(now), tenant=tenant, endpoint=request.endpoint,
        input_file_id=request.input_file_id, completion_window=request.completion_window,
        status="validating", created_at=now, expires_at=now + window_seconds, metadata=request.metadata,
        output_expires_after_seconds=request.output_expires_after_seconds)


IDEMPOTENCY_SECONDS = 86400


def create_batch(tenant: str, body: Any, *, files: FileLookup, batches: BatchRepository,
                 workflow: WorkflowPort, now: int, window_seconds: int,
                 idempotency_key: str | None = None) -> BatchRecord:
    """Returns the stored batch. A repeated Idempotency-Key returns the batch it first made."""
    request = parse_create(body)
    check_input_file(tenant, request.input_file_id, files)
    record = new_batch_record(tenant, request, now=now, window_seconds=window_seconds)
    if idempotency_key:
        claim = batches.claim_idempotency_key(tenant, idempotency_key, record.id,
                                              request.fingerprint(), now + IDEMPOTENCY_SECONDS)
        if claim["batch_id"] != record.id:
            return _replay(tenant, claim, request, batches)
    batches.put_new(record)
    try:
        workflow.start(record.id, tenant)
    except Exception as exc:
        # A batch whose workflow never started would sit in `validating` forever.
        st.transition(batches, tenant, record.id, "failed", extra={"errors": [START_FAILED_ERROR]})
        raise errors.ServerError("The batch could not be started. Please try again.") from exc
    return record


def _replay(tenant: str, claim: dict[str, Any], request: CreateBatchRequest,
            batches: BatchRepository) -> BatchRecord:
    if claim.get("fingerprint") != request.fingerprint():
        raise errors.InvalidRequest(
            "This Idempotency-Key was already used with different request parameters.",
            param="Idempotency-Key", code="idempotency_key_reused")
    item = batches.get(tenant, claim["batch_id"], consistent=True)
    if item is None:  # the first request is still between claiming the key and storing the batch
        raise errors.Conflict("A request with this Idempotency-Key is still in progress.",
                              code="idempotency_key_in_use", headers={"x-should-retry": "true"})
    return item


# -- list / retrieve --------------------------------------------------------------------------
def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return LIST_LIMIT_DEFAULT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= LIST_LIMIT_MAX:
        raise errors.invalid_value(
            "limit", f"Invalid value for 'limit': expected an integer between 1 and {LIST_LIMIT_MAX}, "
                     f"but got '{raw}' instead.")
    return value


def parse_after(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not ids.BATCH_ID.match(raw):
        raise errors.invalid_value("after", f"Invalid value for 'after': '{raw}' is not a batch id.")
    return raw


def list_batches(tenant: str, *, limit: str | None, after: str | None,
                 batches: BatchRepository) -> tuple[list[BatchRecord], bool]:
    """Newest first, only the caller's."""
    return batches.list(tenant, parse_limit(limit), parse_after(after))


def get_batch(tenant: str, batch_id: str, batches: BatchRepository, consistent: bool = False) -> BatchRecord:
    item = batches.get(tenant, batch_id, consistent=consistent) if ids.BATCH_ID.match(batch_id) else None
    if item is None:
        raise errors.NotFound(f"No such Batch object: {batch_id}", param="batch_id")
    return item


# -- cancel -----------------------------------------------------------------------------------
CANCEL_ERROR = WorkflowError.CANCELLED


def cancel_batch(tenant: str, batch_id: str, *, batches: BatchRepository, workflow: WorkflowPort,
                 now: int | None = None) -> BatchRecord:
    """validating|in_progress -> cancelling, then wake the waiting workflow. Idempotent for
    cancelling/cancelled; 409 for every other status."""
    item = get_batch(tenant, batch_id, batches, consistent=True)
    for _ in range(3):  # racing writers: re-read and apply the rules to the status that won
        current = item.status
        if current in ("cancelling", "cancelled"):
            return item
        if current not in st.CANCELLABLE:
            raise errors.Conflict(f"Cannot cancel a batch with status '{current}'.")
        moved = st.transition(batches, tenant, batch_id, "cancelling", at=now)
        if moved is not None:
            # No token yet (validating, or dispatch not started): the workflow sees `cancelling`
            # at its next step and routes to finalize by itself.
            if moved.task_token:
                workflow.fail_task(moved.task_token, error=CANCEL_ERROR, cause="cancelled by user")
            return moved
        item = get_batch(tenant, batch_id, batches, consistent=True)
    raise errors.ServerError("The batch changed status while cancelling. Please try again.")
