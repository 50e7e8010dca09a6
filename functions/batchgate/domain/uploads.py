"""Uploads API logic: an Upload collects parts (each small enough for one Lambda request), then
`complete` streams them, in the order given, into one file. Memory stays bounded whatever the file
size: parts are read in small chunks and regrouped into S3 multipart parts by the FileWriter."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any, Protocol

from batchgate import errors, ids
from batchgate.contract import size_words
from batchgate.domain import files
from batchgate.models.files import file_object
from batchgate.models.records import UploadPartRecord, UploadRecord
from batchgate.models.requests import parse_request
from batchgate.models.uploads import UploadCompleteRequest, UploadCreateRequest, UploadPartResponse, UploadResponse

UPLOAD_LIFETIME_SECONDS = 3600
# How long a `complete` in progress holds the upload: longer than an API Lambda may run (29 s
# behind API Gateway), short enough that a retry after a crash soon succeeds.
COMPLETION_LEASE_SECONDS = 120


class UploadRepository(Protocol):
    def create(self, record: UploadRecord) -> None: ...
    def get(self, tenant: str, upload_id: str) -> UploadRecord | None: ...
    def put_part(self, tenant: str, upload_id: str, *, part_id: str, data: bytes, created_at: int,
                 ttl: int) -> UploadPartRecord: ...
    def parts(self, upload_id: str) -> dict[str, UploadPartRecord]: ...
    def iter_part(self, part: UploadPartRecord) -> Iterator[bytes]: ...
    def claim_completion(self, tenant: str, upload_id: str, *, now: int, lease_seconds: int) -> bool: ...
    def release_completion(self, tenant: str, upload_id: str) -> None: ...
    def mark_completed(self, tenant: str, upload_id: str, *, file: dict[str, Any],
                       now: int) -> UploadRecord | None: ...
    def mark_cancelled(self, tenant: str, upload_id: str, *, now: int) -> UploadRecord | None: ...
    def delete_parts(self, tenant: str, upload_id: str) -> None: ...


def upload_status(record: UploadRecord, now: float) -> str:
    """`expired` is derived: a pending upload past its expires_at."""
    if record.status == "pending" and now >= record.expires_at:
        return "expired"
    return record.status


def upload_object(record: UploadRecord, now: float | None = None) -> dict[str, Any]:
    """The wire Upload object: the record's public fields (not its owner or bookkeeping)."""
    now = time.time() if now is None else now
    return UploadResponse.model_validate({**record.model_dump(exclude={"tenant"}),
                                          "status": upload_status(record, now)}).model_dump()


def _get(repo: UploadRepository, tenant: str, upload_id: str) -> UploadRecord:
    record = repo.get(tenant, upload_id) if ids.UPLOAD_ID.match(upload_id) else None
    if record is None:
        raise errors.NotFound(f"No such Upload object: {upload_id}", param="upload_id")
    return record


def _pending(repo: UploadRepository, tenant: str, upload_id: str, now: float, action: str) -> UploadRecord:
    record = _get(repo, tenant, upload_id)
    status = upload_status(record, now)
    if status != "pending":
        hint = " Create a new upload." if status in ("expired", "cancelled") else ""
        raise errors.InvalidRequest(f"Cannot {action} upload {upload_id}: its status is '{status}'.{hint}",
                                    param="upload_id", code="invalid_upload_status")
    if (record.completing_until or 0) > now:
        raise errors.Conflict(f"Upload {upload_id} is being completed; it takes no more changes.")
    return record


def create_upload(repo: UploadRepository, tenant: str, body: dict[str, Any], *,
                  now: float | None = None) -> dict[str, Any]:
    request = parse_request(UploadCreateRequest, body, strict=True)
    filename = files.safe_filename(request.filename)  # the one rule POST /v1/files applies too
    if request.purpose == "batch":
        files.check_batch_size(request.bytes, param="bytes")
        files.check_batch_filename(filename, param="filename")
    created_at = int(time.time() if now is None else now)
    record = UploadRecord(id=ids.upload_id(), tenant=tenant, bytes=request.bytes, created_at=created_at,
                          expires_at=created_at + UPLOAD_LIFETIME_SECONDS, filename=filename,
                          purpose=request.purpose, mime_type=request.mime_type, expires_after=request.expires_after)
    repo.create(record)
    return upload_object(record, created_at)


def add_part(repo: UploadRepository, tenant: str, upload_id: str, part: files.FilePart | None, *,
             max_part_bytes: int, now: float | None = None) -> dict[str, Any]:
    """`part` is the form's `data` part as sent (None: there was none)."""
    now = time.time() if now is None else now
    record = _pending(repo, tenant, upload_id, now, "add parts to")
    data = files.named_file(part, "data").data
    if len(data) > max_part_bytes:
        raise errors.PayloadTooLarge(
            f"Upload part is {len(data)} bytes; this server accepts parts of at most "
            f"{size_words(max_part_bytes)}. Send the file in smaller parts: choose a part size "
            f"of at most {size_words(max_part_bytes)}.", param="data",
            code="request_too_large")
    stored = repo.put_part(tenant, upload_id, part_id=ids.part_id(), data=data, created_at=int(now),
                           ttl=record.expires_at + 86400)
    return UploadPartResponse.model_validate(stored.model_dump()).model_dump()


def complete_upload(repo: UploadRepository, file_repo: files.FileRepository, tenant: str, upload_id: str,
                    body: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """Check the part list against the stored parts, then stream them in the given order into the
    file (validating batch content on the way); on any failure nothing is stored."""
    request = parse_request(UploadCompleteRequest, body, strict=True)
    now = time.time() if now is None else now
    upload = _pending(repo, tenant, upload_id, now, "complete")
    if len(set(request.part_ids)) != len(request.part_ids):
        raise errors.invalid_value("part_ids", "Invalid value for 'part_ids': a part id appears more than once.")
    stored = repo.parts(upload_id)
    for part_id in request.part_ids:
        if part_id not in stored:
            raise errors.invalid_value("part_ids", f"Part {part_id} does not belong to upload {upload_id}.")
    total = sum(stored[p].bytes for p in request.part_ids)
    if total != upload.bytes:
        raise errors.invalid_value(
            "part_ids", f"The parts add up to {total} bytes, but the upload was created with "
            f"bytes={upload.bytes}. The sizes must match.")
    is_batch = upload.purpose == "batch"
    if is_batch:
        files.check_batch_filename(upload.filename, param="filename")
    if not repo.claim_completion(tenant, upload_id, now=int(now), lease_seconds=COMPLETION_LEASE_SECONDS):
        raise errors.Conflict(f"Upload {upload_id} is being completed; it takes no more changes.")

    created_at = int(now)
    file_id = ids.file_id(int(now * 1000))
    key = file_repo.file_key(tenant, file_id)
    expires_at = files.expires_at_for(upload.purpose, created_at, upload.expires_after)
    writer = file_repo.writer(key, tagging=files.retention_tag(created_at, expires_at))
    try:
        _copy_parts(repo, [stored[p] for p in request.part_ids], writer,
                    utf8=files.Utf8Check("file") if is_batch else None, md5=request.md5)
        writer.close()
    except BaseException:
        writer.abort()
        repo.release_completion(tenant, upload_id)
        raise
    record = file_repo.register(
        tenant, file_id=file_id, filename=upload.filename, purpose=upload.purpose, bytes=total,
        s3_key=key, created_at=created_at, expires_at=expires_at)
    done = repo.mark_completed(tenant, upload_id, file=file_object(record), now=created_at)
    repo.delete_parts(tenant, upload_id)
    return upload_object(done or upload.model_copy(update={"status": "completed", "file": file_object(record)}), now)


def _copy_parts(repo: UploadRepository, parts: list[UploadPartRecord], writer: files.FileWriter, *,
                utf8: files.Utf8Check | None, md5: str | None) -> None:
    digest = hashlib.md5(usedforsecurity=False) if md5 else None
    for part in parts:
        for chunk in repo.iter_part(part):
            if utf8:
                utf8.feed(chunk)
            if digest:
                digest.update(chunk)
            writer.write(chunk)
    if utf8:
        utf8.finish()
    if digest and md5 and digest.hexdigest() != md5.lower():
        raise errors.invalid_value("md5", f"The MD5 of the uploaded bytes is {digest.hexdigest()}, not {md5}.")


def cancel_upload(repo: UploadRepository, tenant: str, upload_id: str, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    _pending(repo, tenant, upload_id, now, "cancel")
    done = repo.mark_cancelled(tenant, upload_id, now=int(now))
    if done is None:  # a complete claimed it between our read and our write
        raise errors.Conflict(f"Upload {upload_id} is being completed; it takes no more changes.")
    repo.delete_parts(tenant, upload_id)
    return upload_object(done, now)
