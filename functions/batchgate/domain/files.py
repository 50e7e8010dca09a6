"""Files API logic: upload rules (batch files are UTF-8 .jsonl up to 200 MB), expiry, listing,
content delivery. Storage is behind the FileRepository port (adapters/file_store.py)."""
from __future__ import annotations

import codecs
import math
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

from batchgate import errors, ids
from batchgate.contract import MAX_RETENTION_DAYS, RETENTION_TAG_KEY, size_words, uploads_hint
from batchgate.models.files import (
    FileCreateRequest,
    FileDeletedResponse,
    FileListRequest,
    FileListResponse,
    file_object,
)
from batchgate.models.pages import fit_page
from batchgate.models.records import ExpiresAfter, FileRecord
from batchgate.models.requests import parse_request

BATCH_MAX_BYTES = 200 * 1024 * 1024
BATCH_DEFAULT_EXPIRY_SECONDS = 30 * 86400
FILENAME_MAX_CHARS = 1024


class FileWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> int: ...
    def abort(self) -> None: ...


class FileRepository(Protocol):
    def file_key(self, tenant: str, file_id: str) -> str: ...
    def get(self, tenant: str, file_id: str) -> FileRecord | None: ...
    def put_bytes(self, key: str, data: bytes, *, tagging: str | None = None) -> None: ...
    def writer(self, key: str, *, tagging: str | None = None) -> FileWriter: ...
    def register(self, tenant: str, *, file_id: str, filename: str, purpose: str, bytes: int,
                 s3_key: str, created_at: int, expires_at: int | None) -> FileRecord: ...
    def list(self, tenant: str, *, limit: int, ascending: bool, after: str | None,
             purpose: str | None) -> tuple[list[FileRecord], bool]: ...
    def delete(self, tenant: str, file_id: str) -> bool: ...
    def read_all(self, record: FileRecord) -> bytes: ...
    def presigned_get(self, record: FileRecord, seconds: int) -> str: ...


@dataclass(frozen=True)
class FileContent:
    """Either the bytes themselves or where to fetch them (a short-lived presigned URL)."""
    data: bytes | None = None
    redirect: str | None = None
    notice: dict[str, Any] | None = None      # the redirect's JSON body: where the bytes are and why


def redirect_notice(file_id: str, nbytes: int, url: str, *, inline_limit: int, expires_in: int) -> dict[str, Any]:
    """The body of the 302, so a client that does not follow redirects sees where the bytes are."""
    return {"object": "file.content.redirect", "id": file_id, "bytes": nbytes, "url": url,
            "expires_in": expires_in,
            "message": f"File {file_id} is {nbytes} bytes, more than this server returns inline "
                       f"({inline_limit} bytes). Its bytes are at the presigned URL in `url` and the "
                       f"Location header, valid for {expires_in} seconds: follow this redirect (curl -L) "
                       "without sending your API key there."}


# -- upload rules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilePart:
    """A file as a request carried it (a multipart part): its bytes and the filename the client
    gave, None when it gave none."""
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class NamedFile:
    """A file accepted for storage: its bytes under its safe filename (`named_file`)."""
    data: bytes
    filename: str


def safe_filename(name: str | None, param: str = "filename") -> str:
    """The one rule for every stored filename (POST /v1/files and POST /v1/uploads): the last path
    component under either separator, without control characters (NUL, CR, LF, ...) or lone
    surrogates; a name that is empty or only dots becomes the SDK's default `upload`; longer than
    1,024 characters is a 400. Filenames never reach S3 keys; this keeps what is echoed back (and
    later downloaded under that name) harmless too."""
    if name is not None and len(name) > FILENAME_MAX_CHARS:
        raise errors.InvalidRequest(f"The filename is too long: at most {FILENAME_MAX_CHARS} characters.",
                                    param=param, code="invalid_value")
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cs"))
    return base if base.strip(". ") else "upload"


def named_file(part: FilePart | None, param: str) -> NamedFile:
    """The required file `param` under its safe filename. The SDK always names a file (`upload` when
    it only had bytes); a part sent without a filename still counts, under the same default name."""
    if part is None:
        raise errors.missing(param)
    return NamedFile(part.data, safe_filename(part.filename, param=param))


def expires_at_for(purpose: str, created_at: int, expires_after: ExpiresAfter | None) -> int | None:
    if expires_after is not None:
        return created_at + expires_after.seconds
    if purpose == "batch":
        return created_at + BATCH_DEFAULT_EXPIRY_SECONDS
    return None


def retention_tag(created_at: int, expires_at: int | None) -> str | None:
    """The S3 object tag (Tagging string) that lets a lifecycle rule delete a file's bytes once its
    record has expired. None (no tag, kept until deleted) for files that never expire, and for
    lifetimes no rule covers: deleting bytes early would be worse than keeping them."""
    if expires_at is None:
        return None
    days = max(1, math.ceil((expires_at - created_at) / 86400))
    return f"{RETENTION_TAG_KEY}={days}" if days <= MAX_RETENTION_DAYS else None


def check_batch_filename(filename: str, param: str = "file") -> None:
    # A name without extension is what the SDK sends for raw bytes ("upload"): accept it.
    ext = os.path.splitext(filename)[1]
    if ext and ext.lower() != ".jsonl":
        raise errors.InvalidRequest("Invalid file format for Batch API. Must be .jsonl.", param=param,
                                    code="invalid_file_format")


def check_batch_size(nbytes: int, param: str = "file") -> None:
    if nbytes > BATCH_MAX_BYTES:
        raise errors.InvalidRequest(
            f"File is too large. Batch input files may be at most {BATCH_MAX_BYTES} bytes (200 MB); "
            f"this one is {nbytes} bytes.", param=param, code="file_too_large")


def check_direct_upload(nbytes: int, limit: int) -> None:
    """Lambda caps a request near 6 MB (base64 included): bigger files go through the Uploads API."""
    if nbytes > limit:
        raise errors.PayloadTooLarge(
            f"Request body is {nbytes} bytes; POST /v1/files accepts at most {size_words(limit)} on "
            f"this server. {uploads_hint(limit)}",
            param="file", code="request_too_large")


class Utf8Check:
    """Incremental UTF-8 validation of a stream, so a 200 MB file is checked without holding it.
    Reports the line and byte offset of the first bad byte."""

    def __init__(self, param: str = "file"):
        self.param = param
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0
        self._lines = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        pending = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            bad = self._offset - pending + exc.start
            line = self._lines + 1 + data.count(b"\n", 0, max(exc.start - pending, 0))
            raise errors.InvalidRequest(
                f"Invalid file format for Batch API. The file must be UTF-8 encoded JSONL: line {line} "
                f"has bytes that are not valid UTF-8 (at byte offset {bad}).",
                param=self.param, code="invalid_file_format") from None
        self._offset += len(data)
        self._lines += data.count(b"\n")

    def finish(self) -> None:
        self.feed(b"", final=True)


def check_batch_content(filename: str, data: bytes, param: str = "file") -> None:
    check_batch_filename(filename, param)
    check_batch_size(len(data), param)
    check = Utf8Check(param)
    check.feed(data, final=True)


# -- operations --------------------------------------------------------------------------------
def parse_create(fields: dict[str, Any]) -> FileCreateRequest:
    """The form's text fields (`expires_after` as an object)."""
    return parse_request(FileCreateRequest, fields)


def create_file(repo: FileRepository, tenant: str, part: NamedFile, fields: dict[str, Any], *,
                now: float | None = None) -> FileRecord:
    """POST /v1/files: validate everything first, then store the bytes and the record. `part` is
    the `file` part under its safe name (`named_file`), `fields` the form's text fields."""
    request = parse_create(fields)
    if request.purpose == "batch":
        check_batch_content(part.filename, part.data)
    now = time.time() if now is None else now
    created_at = int(now)
    file_id = ids.file_id(int(now * 1000))
    key = repo.file_key(tenant, file_id)
    expires_at = expires_at_for(request.purpose, created_at, request.expires_after)
    repo.put_bytes(key, part.data, tagging=retention_tag(created_at, expires_at))
    return repo.register(tenant, file_id=file_id, filename=part.filename, purpose=request.purpose,
                         bytes=len(part.data), s3_key=key, created_at=created_at, expires_at=expires_at)


def get_file(repo: FileRepository, tenant: str, file_id: str) -> FileRecord:
    record = repo.get(tenant, file_id) if ids.FILE_ID.match(file_id) else None
    if record is None:
        raise errors.NotFound(f"No such File object: {file_id}", param="id")
    return record


def parse_list(query: dict[str, str]) -> FileListRequest:
    return parse_request(FileListRequest, query, values_only=True)


def list_files(repo: FileRepository, tenant: str, query: dict[str, str]) -> dict[str, Any]:
    request = parse_list(query)
    records, has_more = repo.list(tenant, limit=request.limit, ascending=request.order == "asc",
                                  after=request.after, purpose=request.purpose)
    data, has_more = fit_page([file_object(r) for r in records], has_more)
    return FileListResponse(data=data, first_id=data[0]["id"] if data else None,
                            last_id=data[-1]["id"] if data else None,
                            has_more=has_more).model_dump()


def delete_file(repo: FileRepository, tenant: str, file_id: str) -> dict[str, Any]:
    get_file(repo, tenant, file_id)  # expired files are not found either
    if not repo.delete(tenant, file_id):
        raise errors.NotFound(f"No such File object: {file_id}", param="id")
    return FileDeletedResponse(id=file_id).model_dump()


def file_content(repo: FileRepository, tenant: str, file_id: str, *, redirect_over: int,
                 presign_seconds: int) -> FileContent:
    """Small files come back inline; large ones by redirect, since a Lambda answer is capped at 6 MB."""
    record = get_file(repo, tenant, file_id)
    if record.bytes > redirect_over:
        url = repo.presigned_get(record, presign_seconds)
        return FileContent(redirect=url, notice=redirect_notice(
            file_id, record.bytes, url, inline_limit=redirect_over, expires_in=presign_seconds))
    return FileContent(data=repo.read_all(record))
