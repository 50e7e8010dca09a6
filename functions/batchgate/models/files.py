"""Wire models of the Files API (the shapes of the SDK's `FileObject`, `FileDeleted`, list page)
and of its requests, plus the one mapping of pydantic validation errors to OpenAI's 400s."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchgate import errors, ids

# What POST /v1/files and POST /v1/uploads accept (reference §6.2); the generated purposes
# (batch_output, ...) are set by the service only.
UploadPurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]

EXPIRES_MIN_SECONDS = 3600
EXPIRES_MAX_SECONDS = 2592000


class ExpiresAfterRequest(BaseModel):
    anchor: Literal["created_at"]
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


def file_object(record: dict[str, Any]) -> dict[str, Any]:
    """The wire File object of a stored file record (extra record fields such as s3_key are dropped)."""
    return FileResponse.model_validate(record).model_dump()


_TYPE_NAMES = {"string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
               "int_from_float": "an integer", "bool_type": "a boolean", "list_type": "an array",
               "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
               "float_type": "a number", "float_parsing": "a number"}


def request_error(exc: ValidationError, *, values_only: bool = False) -> errors.InvalidRequest:
    """The first pydantic error as OpenAI's 400: missing_required_parameter, invalid_type or
    invalid_value, naming the parameter (nested ones dotted, e.g. `expires_after.seconds`).
    `values_only` reports type errors as invalid_value too (query strings are all text)."""
    err = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in err["loc"]) or "body"
    kind = err["type"]
    if kind == "missing":
        return errors.missing(param)
    if kind in _TYPE_NAMES and not values_only:
        return errors.invalid_type(param, _TYPE_NAMES[kind], err.get("input"))
    if kind == "string_pattern_mismatch":
        return errors.invalid_value(param, f"Invalid value for '{param}': {err.get('input')!r} is not a valid id.")
    return errors.invalid_value(param, f"Invalid value for '{param}': {err['msg']}.")
