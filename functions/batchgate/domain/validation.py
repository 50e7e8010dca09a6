"""Validation of a batch input file, line by line, and the chunk manifest of a valid file.

Codes and messages follow reference §3 / §12. Decisions where OpenAI is silent:
- Lines are split on b"\\n" only. A line that is empty or whitespace-only is ignored when only such
  lines follow it (a trailing newline or blank tail, as OpenAI tolerates); anywhere else it is an
  `invalid_json_line`.
- A line that parses but is not a JSON object is an `invalid_json_line` too (it is not a request line).
- Each bad line gets one entry (its first problem); `errors.data` stops at 1,000 entries and checking
  stops there. More than 50,000 requests stops checking with one `too_many_tasks` entry.
- `body.model` is required except for endpoints whose OpenAI body has a default model (moderations,
  images, videos); lines without a model then count as the batch's "no model".
"""
from __future__ import annotations

import hashlib
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchgate.contract import QuotaConfig
from batchgate.domain import status as st
from batchgate.domain.jsonl import Line, iter_lines
from batchgate.domain.ports import BatchRepository, ChunkRepository, EngineFiles, QuotaExceeded
from batchgate.models.engine import ChunkSpec, Outcome, ValidateStepOutput

MAX_REQUESTS = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_ERRORS = 1_000
MAX_MODEL_CHARS = 256     # the batch record keeps the model; a model name is never longer
# The errors are stored in the batch's DynamoDB item (400 KB at most, everything included): bounded in
# UTF-8 bytes, not characters (a 64-character quote of emoji is 256 bytes). Quotes are cut at
# QUOTE_BYTES; collecting stops before the errors' JSON passes ERRORS_MAX_BYTES.
QUOTE_BYTES = 64
ERRORS_MAX_BYTES = 200_000
JSON_WHITESPACE = b" \t\r\n"  # RFC 8259 whitespace; bytes.strip() would also eat \x0b and \x0c


def _quote(value: object) -> str:
    data = str(value).encode("utf-8", "replace")
    if len(data) <= QUOTE_BYTES:
        return data.decode()
    return data[:QUOTE_BYTES].decode("utf-8", "ignore") + "…"  # never half a character


_MODEL_REQUIRED = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
_REQUIRED_BODY_FIELD = {"/v1/chat/completions": ("messages", "Messages parameter is required."),
                        "/v1/embeddings": ("input", "Input parameter is required."),
                        "/v1/moderations": ("input", "Input parameter is required.")}
_ENDPOINT_LABEL = {"/v1/chat/completions": "Chat Completions", "/v1/completions": "Completions",
                   "/v1/responses": "Responses", "/v1/embeddings": "Embeddings",
                   "/v1/moderations": "Moderations", "/v1/images/generations": "Images",
                   "/v1/images/edits": "Images", "/v1/videos": "Videos"}


@dataclass
class ValidationResult:
    errors: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    model: str | None = None
    chunks: list[ChunkSpec] = field(default_factory=list)
    estimated_tokens: int = 0   # prompt tokens, as counted against the enqueued-token quota

    @property
    def ok(self) -> bool:
        return not self.errors


def batch_error(code: str, message: str, param: str | None = None,
                line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


class _LineError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class _Chunker:
    """Cuts the valid lines into chunks of at most `max_lines` lines and `max_bytes` bytes (a single line
    larger than `max_bytes` gets a chunk of its own), evenly: as few chunks as those bounds allow, rounded
    up to a multiple of the batch's `lanes` when there are more chunks than lanes (so the lanes run the
    same number of chunks), each of about the same number of lines. A batch ends with its largest
    chunk: 3,000 lines at 2,000 a chunk are two chunks of 1,500, not 2,000 and 1,000."""

    def __init__(self, max_lines: int, max_bytes: int, lanes: int = 0):
        self.max_lines, self.max_bytes, self.lanes = max_lines, max_bytes, lanes
        self._index, self._start, self._end = array("q"), array("q"), array("q")   # each valid line

    def add(self, line: Line) -> None:
        self._index.append(line.index)
        self._start.append(line.start)
        self._end.append(line.end)

    def close(self) -> list[ChunkSpec]:
        lines = len(self._index)
        if not lines:
            return []
        count = len(self._cut(lambda n: self.max_lines))
        if 0 < self.lanes < count:
            count = min(lines, -(-count // self.lanes) * self.lanes)
        even, longer = divmod(lines, count)   # the first `longer` chunks take one line more
        return self._cut(lambda n: even + 1 if n < longer else even)

    def _cut(self, lines_of: Callable[[int], int]) -> list[ChunkSpec]:
        """Chunk n takes up to `lines_of(n)` lines, and fewer where the next line would pass max_bytes."""
        chunks: list[ChunkSpec] = []
        c: ChunkSpec | None = None
        for index, start, end in zip(self._index, self._start, self._end, strict=True):
            if c and (c.end_line - c.first_line >= lines_of(c.n) or end - c.byte_start > self.max_bytes):
                chunks.append(c)
                c = None
            if c is None:
                c = ChunkSpec(n=len(chunks), first_line=index, end_line=index, byte_start=start, byte_end=start)
            c.end_line, c.byte_end = index + 1, end
        if c:
            chunks.append(c)
        return chunks


def estimate_tokens(line: bytes) -> int:
    """Prompt tokens of a request line, estimated as OpenAI's docs do for English text (about 4 bytes
    a token) over the whole line: an overestimate by the line's envelope (custom_id, url), never a
    tokenizer's exact count. The enqueued-token quota counts this."""
    return (len(line) + 3) // 4


def _embedding_inputs(body: dict[str, Any]) -> int:
    value = body.get("input")
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)  # a list of strings or of token arrays: one input each
    return 1


class Validator:
    def __init__(self, endpoint: str, *, chunk_max_lines: int, chunk_max_bytes: int, lanes: int = 0):
        self.endpoint = endpoint
        self.result = ValidationResult()
        self._chunker = _Chunker(chunk_max_lines, chunk_max_bytes, lanes)
        self._seen: set[bytes] = set()
        self._model_seen = False
        self._embedding_inputs = 0
        self._blank_lines: list[int] = []
        self._errors_bytes = 0
        self.stopped = False

    def _error(self, code: str, message: str, param: str | None, line: int | None) -> None:
        error = batch_error(code, message, param, line)
        size = len(orjson.dumps(error)) + 1
        if self._errors_bytes + size > ERRORS_MAX_BYTES:
            self.stopped = True
            return
        self._errors_bytes += size
        self.result.errors.append(error)
        if len(self.result.errors) >= MAX_ERRORS:
            self.stopped = True

    def feed(self, line: Line) -> None:
        if self.stopped:
            return
        if not line.data.strip(JSON_WHITESPACE):
            self._blank_lines.append(line.index + 1)
            return
        for number in self._blank_lines:  # blanks followed by a request: they are bad lines
            self._error("invalid_json_line", "This line is not parseable as valid JSON.", None, number)
            if self.stopped:
                return
        self._blank_lines.clear()
        self.result.total += 1
        if self.result.total > MAX_REQUESTS:
            self._error("too_many_tasks", f"The batch input file contains more than {MAX_REQUESTS:,} "
                        f"requests. Each batch may contain at most {MAX_REQUESTS:,} requests.",
                        None, None)
            self.stopped = True
            return
        try:
            self._check(line)
        except _LineError as exc:
            self._error(exc.code, exc.message, exc.param, line.index + 1)
            return
        self._chunker.add(line)
        self.result.estimated_tokens += estimate_tokens(line.data)

    def _check(self, line: Line) -> None:
        try:
            obj = orjson.loads(line.data)
        except orjson.JSONDecodeError:
            raise _LineError("invalid_json_line", "This line is not parseable as valid JSON.") from None
        if not isinstance(obj, dict):
            raise _LineError("invalid_json_line", "This line is not parseable as valid JSON.")
        for name in ("custom_id", "method", "url", "body"):
            if name not in obj or obj[name] is None:
                raise _LineError("missing_required_parameter", f"Missing required parameter: '{name}'.",
                                 name)
        custom_id = obj["custom_id"]
        if not isinstance(custom_id, str):
            raise _LineError("invalid_request", "The custom_id parameter must be a string.", "custom_id")
        if obj["method"] != "POST":
            raise _LineError("invalid_request", "Only the POST method is supported for batch requests.",
                             "method")
        if obj["url"] != self.endpoint:
            raise _LineError("invalid_url",
                             "The URL provided for this request does not match the batch endpoint.", "url")
        body = obj["body"]
        if not isinstance(body, dict):
            raise _LineError("invalid_request", "The body parameter must be a JSON object.", "body")
        model = body.get("model")
        if model is None and self.endpoint in _MODEL_REQUIRED:
            raise _LineError("invalid_request", "Model parameter is required.", "body.model")
        if model is not None and not isinstance(model, str):
            raise _LineError("invalid_request", "The model parameter must be a string.", "body.model")
        if model is not None and len(model) > MAX_MODEL_CHARS:
            raise _LineError("invalid_request", f"The model parameter must be at most {MAX_MODEL_CHARS} "
                             "characters long.", "body.model")
        required = _REQUIRED_BODY_FIELD.get(self.endpoint)
        if required and body.get(required[0]) is None:
            raise _LineError("invalid_request", required[1], f"body.{required[0]}")
        if body.get("stream") is True:
            label = _ENDPOINT_LABEL.get(self.endpoint, "This endpoint")
            raise _LineError("streaming_unsupported",
                             f"{label}: Streaming is not supported in the Batch API.", "body.stream")
        if not self._model_seen:
            self._model_seen, self.result.model = True, model
        elif model != self.result.model:
            raise _LineError("mismatched_model", f"The model '{_quote(model)}' for this request does not match "
                             "the rest of the batch. Each batch must contain requests for a single model.",
                             "body.model")
        digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in self._seen:
            raise _LineError("duplicate_custom_id", f"The custom_id '{_quote(custom_id)}' for this request is a "
                             "duplicate of another request. The custom_id parameter must be unique for "
                             "each request in a batch.", "custom_id")
        self._seen.add(digest)
        if self.endpoint == "/v1/embeddings":
            before = self._embedding_inputs
            self._embedding_inputs += _embedding_inputs(body)
            if self._embedding_inputs > MAX_EMBEDDING_INPUTS >= before:
                raise _LineError("too_many_embedding_inputs",
                                 f"The batch contains more than {MAX_EMBEDDING_INPUTS:,} embedding inputs "
                                 "in total. Each embeddings batch may contain at most "
                                 f"{MAX_EMBEDDING_INPUTS:,} inputs.", "body.input")

    def finish(self) -> ValidationResult:
        if not self.stopped and self.result.total == 0 and not self.result.errors:
            self._error("empty_file", "The batch input file is empty. Please provide at least one "
                        "request.", None, None)
        self.result.chunks = self._chunker.close() if not self.result.errors else []
        return self.result


def validate_lines(lines: Iterable[Line], endpoint: str, *, chunk_max_lines: int,
                   chunk_max_bytes: int, lanes: int = 0) -> ValidationResult:
    """Check every line (stops early at 1,000 errors or too many requests)."""
    v = Validator(endpoint, chunk_max_lines=chunk_max_lines, chunk_max_bytes=chunk_max_bytes, lanes=lanes)
    for line in lines:
        v.feed(line)
        if v.stopped:
            break
    return v.finish()


# -- the Validate step ------------------------------------------------------------------------
READ_BLOCK = 1024 * 1024


def _missing_file(file_id: str) -> ValidationResult:
    return ValidationResult(errors=[batch_error(
        "invalid_request", f"Cannot find file {file_id}, or it is no longer available.", "input_file_id")])


def validate_batch(tenant: str, batch_id: str, *, batches: BatchRepository, files: EngineFiles,
                   chunks: ChunkRepository, chunk_max_lines: int, chunk_max_bytes: int, now: float,
                   quotas: QuotaConfig | None = None, lanes: int = 0) -> ValidateStepOutput:
    """Check the input file of a `validating` batch, count its tokens as enqueued for its model, then
    write the chunk manifest and move it to in_progress (or to failed with errors, `token_limit_exceeded`
    when the tokens do not fit the tenant's quota). Re-runnable: a batch already past validating answers
    with the outcome it reached, and its tokens are counted once."""
    batch = batches.get(tenant, batch_id, consistent=True)
    if batch is None:
        raise RuntimeError(f"batch {batch_id} not found")
    started = time.monotonic()

    def answer(outcome: Outcome) -> ValidateStepOutput:
        # Counted from the end of validation: the Dispatch timeout (the expiry) must not be pushed
        # past expires_at by however long reading the file took.
        at = now + (time.monotonic() - started)
        left = int(batch.expires_at - at)
        return ValidateStepOutput(batch_id=batch_id, tenant=tenant, outcome=outcome, seconds_left=max(1, left))

    def settled(status: str) -> ValidateStepOutput:
        if status in ("cancelling", "cancelled"):
            return answer("cancelled")
        return answer("failed" if status in ("failed", "expired") else "valid")

    # A batch cancelled before its lines were read still has them read and chunked, so finalize
    # can account for every line (as batch_cancelled) whenever the cancel landed.
    unread_cancel = batch.status == "cancelling" and batch.chunk_count is None
    if batch.status != "validating" and not unread_cancel:
        return settled(batch.status)
    record = files.get(tenant, batch.input_file_id)
    if record is None:
        result = _missing_file(batch.input_file_id)
    else:
        body = files.open_stream(record)
        try:
            result = validate_lines(iter_lines(body.iter_chunks(READ_BLOCK)), batch.endpoint,
                                    chunk_max_lines=chunk_max_lines, chunk_max_bytes=chunk_max_bytes,
                                    lanes=lanes)
        finally:
            body.close()
    if result.ok and batch.status == "validating":
        limit = (quotas or QuotaConfig()).enqueued_tokens(tenant, result.model)
        try:
            batches.reserve_tokens(tenant, batch_id, result.model, result.estimated_tokens, limit)
        except QuotaExceeded as exc:
            result.errors.append(token_limit_error(tenant, result.model, exc, result.estimated_tokens))
    if not result.ok:
        if st.transition(batches, tenant, batch_id, "failed", extra={"errors": result.errors}):
            return answer("failed")
        return settled(_status_now(batches, tenant, batch_id))
    # Written even if the batch is being cancelled: finalize then reports every line as batch_cancelled.
    ttl = batch.expires_at + 40 * 86400
    chunks.put_all(batch_id, tenant, result.chunks, ttl)
    batches.update_fields(tenant, batch_id, {
        "model": result.model, "total": result.total, "chunk_count": len(result.chunks), "chunks_done": 0,
        "input_s3_key": record.s3_key if record else None}, require_status=["validating", "cancelling"])
    if st.transition(batches, tenant, batch_id, "in_progress"):
        return answer("valid")
    return settled(_status_now(batches, tenant, batch_id))


def token_limit_error(tenant: str, model: str | None, exc: QuotaExceeded, tokens: int) -> dict[str, Any]:
    """OpenAI's `token_limit_exceeded` (reference §3), with the usage that refused it."""
    return batch_error("token_limit_exceeded", (
        f"Enqueued token limit reached for {model or 'this endpoint'} in organization {tenant}. "
        f"Limit: {exc.limit:,} enqueued tokens; currently enqueued: {exc.current:,}; this batch: "
        f"{tokens:,} (estimated). Please try again once some in_progress batches have been completed."))


def _status_now(batches: BatchRepository, tenant: str, batch_id: str) -> str:
    batch = batches.get(tenant, batch_id, consistent=True)
    if batch is None:
        raise RuntimeError(f"batch {batch_id} not found")
    return batch.status
