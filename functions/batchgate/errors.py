"""Typed errors raised by the domain; one place (handlers/http.py) maps them to OpenAI's envelope.

The envelope is `{"error": {"message", "type", "param", "code"}}` with all four keys present
(`contract.error_envelope`).
"""
from __future__ import annotations

from batchgate.contract import error_envelope


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict:
        return error_envelope(self.message, type=self.type, param=self.param, code=self.code)


class InvalidRequest(ApiError):
    """400: the request itself is wrong (types, values, missing parameters)."""


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str = "Incorrect API key provided.", **kw):
        kw.setdefault("code", "invalid_api_key")
        super().__init__(message, **kw)


class NotFound(ApiError):
    """404: unknown id, or an id of another tenant (never 403: no existence oracle)."""
    status = 404


class Conflict(ApiError):
    """409: the object is in a state that forbids the operation. Not retryable."""
    status = 409

    def __init__(self, message: str, **kw):
        super().__init__(message, **kw)
        self.headers.setdefault("x-should-retry", "false")


class PayloadTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    status = 429
    type = "rate_limit_error"


class ServerError(ApiError):
    status = 500
    type = "server_error"


def invalid_type(param: str, expected: str, got: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(got)} instead.",
        param=param, code="invalid_type")


def invalid_value(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                          code="missing_required_parameter")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
