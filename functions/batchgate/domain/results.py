"""Output / error lines (reference §4.2 and §12) and token usage taken from upstream bodies."""
from __future__ import annotations

from typing import Any

import orjson

from batchgate import ids
from batchgate.models.engine import Usage

CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
FAILED_MESSAGE = "This request was not executed because the batch failed (see the batch's errors)."
NOT_RUN = {"cancelled": ("batch_cancelled", CANCELLED_MESSAGE),
           "expired": ("batch_expired", EXPIRED_MESSAGE),
           "failed": ("batch_failed", FAILED_MESSAGE)}


def response_line(custom_id: str | None, status_code: int, request_id: str, body: Any,
                  raw_json: bytes | None = None) -> bytes:
    """A line the upstream answered (2xx -> output file; otherwise error file with `error: null`).
    `raw_json`, when given, is the body's JSON on one line, spliced in as it came (no re-encoding, so
    no depth limit and exact numbers); otherwise `body` (text) is encoded."""
    if raw_json is None:
        return orjson.dumps({"id": ids.batch_request_id(), "custom_id": custom_id,
                             "response": {"status_code": status_code, "request_id": request_id,
                                          "body": body},
                             "error": None}) + b"\n"
    head = orjson.dumps({"id": ids.batch_request_id(), "custom_id": custom_id})[:-1]
    return b"".join((head, b',"response":{"status_code":', str(int(status_code)).encode(),
                     b',"request_id":', orjson.dumps(request_id), b',"body":', raw_json,
                     b'},"error":null}\n'))


def error_line(custom_id: str | None, code: str, message: str) -> bytes:
    """A line without a response: upstream unreachable / timed out / its answer too large, or never run."""
    return orjson.dumps({"id": ids.batch_request_id(), "custom_id": custom_id, "response": None,
                         "error": {"code": code, "message": message}}) + b"\n"


def not_run_line(custom_id: str | None, reason: str) -> bytes:
    code, message = NOT_RUN[reason]
    return error_line(custom_id, code, message)


# Upstream bodies are untrusted input: a token count is taken only if it is a plausible one. Bounding
# each line keeps a batch's sums (at most 50,000 lines) far below 2**53, so they stay exact in
# DynamoDB, in JSON and in JavaScript clients; anything else counts as 0 (not reported).
MAX_TOKENS_PER_LINE = 2**32 - 1


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS_PER_LINE:
        return 0
    return value


def usage_of(body: Any) -> Usage:
    """Usage of one response body: chat/completions/embeddings (`prompt_tokens`...) or the Responses
    API (`input_tokens`...); zeros where absent."""
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        return Usage()
    u = body["usage"]
    input_tokens = _int(u.get("prompt_tokens")) or _int(u.get("input_tokens"))
    output_tokens = _int(u.get("completion_tokens")) or _int(u.get("output_tokens"))
    in_details = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    out_details = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
    cached = _int(in_details.get("cached_tokens")) if isinstance(in_details, dict) else 0
    reasoning = _int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    total = _int(u.get("total_tokens")) or input_tokens + output_tokens
    return Usage(input_tokens=input_tokens, cached_tokens=cached, output_tokens=output_tokens,
                 reasoning_tokens=reasoning, total_tokens=total)
