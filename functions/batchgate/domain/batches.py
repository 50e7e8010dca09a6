"""Batches: create (synchronous checks, then store and start the workflow), list, retrieve, cancel.

Pure logic: stores and the workflow arrive as ports; errors are batchgate.errors (reference §2.2, §5,
§12 fix the messages, params and codes).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from batchgate import errors, ids
from batchgate.contract import WorkflowError
from batchgate.domain import status as st
from batchgate.domain.ports import BatchRepository, QuotaExceeded, WorkflowPort
from batchgate.models.batches import BatchCreateRequest, BatchListRequest
from batchgate.models.records import BatchRecord, FileRecord
from batchgate.models.requests import parse_request

START_FAILED_ERROR = {"code": "batch_start_failed", "param": None, "line": None,
                      "message": "The batch could not be started. Please create it again."}


# -- ports ------------------------------------------------------------------------------------
class FileLookup(Protocol):
    def get(self, tenant: str, file_id: str) -> FileRecord | None: ...


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


def parse_create(body: Any) -> CreateBatchRequest:
    """The synchronous checks of POST /v1/batches, in parameter order; the first problem wins."""
    checked = parse_request(BatchCreateRequest, body)
    expiry = checked.output_expires_after
    return CreateBatchRequest(input_file_id=checked.input_file_id, endpoint=checked.endpoint,
                              completion_window=checked.completion_window, metadata=checked.metadata,
                              output_expires_after_seconds=expiry.seconds if expiry else None)


def check_input_file(tenant: str, file_id: str, files: FileLookup) -> FileRecord:
    record = files.get(tenant, file_id) if ids.FILE_ID.match(file_id) else None
    if record is None:
        raise errors.NotFound(f"No such File object: {file_id}", param="input_file_id")
    purpose = record.purpose
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
                 idempotency_key: str | None = None, active_limit: int | None = None) -> BatchRecord:
    """Returns the stored batch. A repeated Idempotency-Key returns the batch it first made. A tenant
    with `active_limit` batches not yet ended gets 429 (nothing stored)."""
    request = parse_create(body)
    check_input_file(tenant, request.input_file_id, files)
    record = new_batch_record(tenant, request, now=now, window_seconds=window_seconds)
    if idempotency_key:
        claim = batches.claim_idempotency_key(tenant, idempotency_key, record.id,
                                              request.fingerprint(), now + IDEMPOTENCY_SECONDS)
        if claim["batch_id"] != record.id:
            return _replay(tenant, claim, request, batches)
    try:
        record = batches.put_new(record, active_limit=active_limit)
    except QuotaExceeded as exc:
        if idempotency_key:
            batches.release_idempotency_key(tenant, idempotency_key, record.id)
        raise errors.TooManyRequests(
            f"Active batch limit reached for organization {tenant}. Limit: {exc.limit:,} active batches; "
            f"currently active: {exc.current:,}. Please try again once some of them have ended.",
            code="active_batch_limit_exceeded", headers={"x-should-retry": "false"}) from None
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
def list_batches(tenant: str, query: dict[str, str], *,
                 batches: BatchRepository) -> tuple[list[BatchRecord], bool]:
    """Newest first, only the caller's. `query` is GET /v1/batches' query string."""
    request = parse_request(BatchListRequest, query, values_only=True)
    return batches.list(tenant, request.limit, request.after)


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
