"""Wire models of the Uploads API (the SDK's `Upload`, `UploadPart`) and its JSON requests."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from batchgate.models.files import ExpiresAfterRequest, FileResponse, UploadPurpose

UploadStatus = Literal["pending", "completed", "cancelled", "expired"]

# OpenAI's cap on one Upload (reference §6.5).
UPLOAD_MAX_BYTES = 8 * 1024 ** 3


class UploadCreateRequest(BaseModel):
    """JSON body of POST /v1/uploads, validated strictly: `"bytes": "10"` is a type error."""
    model_config = ConfigDict(strict=True)

    filename: str = Field(min_length=1, max_length=1024)
    purpose: UploadPurpose
    bytes: int = Field(ge=0, le=UPLOAD_MAX_BYTES)
    mime_type: str = Field(min_length=1, max_length=255)   # RFC 6838: type/subtype of 127 characters each
    expires_after: ExpiresAfterRequest | None = None


class UploadCompleteRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    part_ids: list[str] = Field(max_length=10_000)
    md5: str | None = Field(None, max_length=64)


class UploadResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: UploadStatus
    file: FileResponse | None = None


class UploadPartResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
