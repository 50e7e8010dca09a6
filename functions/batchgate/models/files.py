"""Wire models of the Files API (the shapes of the SDK's `FileObject`, `FileDeleted`, list page)
and of its requests (validated through `models.requests.parse_request`)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from batchgate import ids
from batchgate.models.records import ExpiresAfter, FileRecord
from batchgate.models.requests import EXPIRES_MAX_SECONDS, EXPIRES_MIN_SECONDS

# What POST /v1/files and POST /v1/uploads accept (reference §6.2); the generated purposes
# (batch_output, ...) are set by the service only.
UploadPurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]

class ExpiresAfterRequest(ExpiresAfter):
    seconds: int = Field(ge=EXPIRES_MIN_SECONDS, le=EXPIRES_MAX_SECONDS)


class FileCreateRequest(BaseModel):
    """The non-file fields of the multipart form (values arrive as text, so coercion is lax)."""
    purpose: UploadPurpose
    expires_after: ExpiresAfterRequest | None = None


class FileListRequest(BaseModel):
    """Query string of GET /v1/files."""
    purpose: str | None = None
    limit: int = Field(10000, ge=1, le=10000)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = Field(None, pattern=ids.FILE_ID.pattern)


class FileResponse(BaseModel):
    """OpenAI's File object. `status`/`status_details` are deprecated upstream but still required."""
    model_config = ConfigDict(extra="ignore")

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileResponse]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeletedResponse(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


def file_object(record: FileRecord) -> dict[str, Any]:
    """The wire File object of a stored file (tenant and s3_key stay behind)."""
    return FileResponse.model_validate(record.model_dump(exclude={"tenant", "s3_key"})).model_dump()
