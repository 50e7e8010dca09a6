"""The records Batchgate keeps in the state table, typed: what a store returns and what the domain reads.

The engine's own records (`ChunkRecord`, `SegmentRecord`) live in `models/engine.py`. A record declares
every attribute any module writes to its item; the stores strip the table keys (`pk`, `sk`, `ttl`) and
refuse partial updates of undeclared fields (`BatchStore.update_fields`), so the item's shape is here and
nowhere else. Wire objects (what the SDK reads) are built from records in `models/batches.py` and
`models/files.py`; nothing internal reaches them by accident.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from batchgate.models.engine import USAGE_FIELDS as USAGE_FIELDS  # re-exported for the stores

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed",
                      "expired", "cancelling", "cancelled"]
TABLE_KEYS = frozenset({"pk", "sk", "ttl"})


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Any:
        """A state-table item (values already plain Python) -> the record, table keys dropped."""
        return cls.model_validate({k: v for k, v in item.items() if k not in TABLE_KEYS})


class ResultFileIds(BaseModel):
    """File ids Finalize plans (and stores) before it writes, so a re-run reuses them."""
    output: str
    error: str


class BatchRecord(_Record):
    """The batch item. Wire fields as the API returns them, then the engine's bookkeeping."""
    # -- OpenAI's Batch object (reference §1)
    id: str
    object: Literal["batch"] = "batch"
    tenant: str
    endpoint: str
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    metadata: dict[str, str] | None = None
    # Usage sums: absent until a worker ADDs to them (then the batch shows `usage` once terminal).
    input_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None
    # -- the create request's options
    output_expires_after_seconds: int | None = None
    # -- the engine's bookkeeping (docs/design.md, "The batch item")
    status_token: str | None = None          # tells our own status write from a rival's (BatchStore)
    task_token: str | None = None            # Dispatch parks the workflow's token here
    chunk_count: int | None = None           # set by validation; None = lines not read yet
    chunks_done: int = 0
    chunk_lanes: int | None = None           # Dispatch: chunks running or queued at once (None: all of them)
    input_s3_key: str | None = None          # the input bytes stay readable if the file record goes
    result_file_ids: ResultFileIds | None = None
    # -- quotas (adapters/batch_store.py keeps the tenant's counters with these, in one transaction)
    quota_active: bool | None = None         # counted among the tenant's active batches (create)
    quota_tokens: int | None = None          # estimated prompt tokens counted as enqueued (validation)...
    quota_model: str | None = None           # ...for this model
    quota_released: bool | None = None       # both given back (the terminal transition)

    def has_usage(self) -> bool:
        return any(getattr(self, f) is not None for f in USAGE_FIELDS)


class FileRecord(_Record):
    """The file item: OpenAI's File object fields, the owner, and where the bytes are."""
    id: str
    object: Literal["file"] = "file"
    tenant: str
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str = "processed"
    s3_key: str


class ExpiresAfter(BaseModel):
    """A file's expiry policy as stored (the request's bounds are checked in `ExpiresAfterRequest`)."""
    anchor: Literal["created_at"]
    seconds: int


class UploadRecord(_Record):
    """The upload item (OpenAI's Upload object, stored). `expired` is never stored: a pending upload
    past `expires_at` reads as expired (domain/uploads.upload_status)."""
    id: str
    object: Literal["upload"] = "upload"
    tenant: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled"] = "pending"
    mime_type: str
    expires_after: ExpiresAfter | None = None          # for the file `complete` creates
    file: dict[str, Any] | None = None                  # the File object, once completed
    completing_until: int | None = None                 # a `complete` in progress holds the upload
    completed_at: int | None = None
    cancelled_at: int | None = None


class UploadPartRecord(_Record):
    """One part's item (OpenAI's UploadPart object) and where its bytes are."""
    id: str
    object: Literal["upload.part"] = "upload.part"
    upload_id: str
    created_at: int
    bytes: int
    s3_key: str
