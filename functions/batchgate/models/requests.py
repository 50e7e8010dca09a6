"""What every request model shares: the one mapping of pydantic validation errors to OpenAI's 400s,
the one way to validate a body with a model, and the expiry bounds of `expires_after` (files, uploads)
and `output_expires_after` (batches).

Built-in pydantic errors are mapped by kind (missing, wrong type, wrong value). A rule pydantic cannot
say in OpenAI's words (a metadata key too long, a value outside a list of supported ones) raises
`rejected(...)` from a validator: it carries OpenAI's own message, code and param through unchanged.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from batchgate import errors

# `expires_after.seconds` (POST /v1/files, /v1/uploads) and `output_expires_after.seconds`
# (POST /v1/batches): one hour to 30 days (reference §2.1, §6.2).
EXPIRES_MIN_SECONDS = 3600
EXPIRES_MAX_SECONDS = 2592000

_TYPE_NAMES = {"string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
               "int_from_float": "an integer", "bool_type": "a boolean", "list_type": "an array",
               "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
               "float_type": "a number", "float_parsing": "a number"}
_REJECTED = "openai_error"

M = TypeVar("M", bound=BaseModel)


def rejected(code: str, message: str, *, at: str | None = None) -> PydanticCustomError:
    """Raise from a validator to answer with OpenAI's own `code` and `message` as they are. The param
    is the validated field's location, dotted, followed by `at` when given (a metadata key's errors
    name `metadata.<key>`)."""
    # The message travels in the context, never in the template: user text may contain `{...}`.
    return PydanticCustomError(_REJECTED, "rejected by an OpenAI rule",
                               {"code": code, "message": message, "at": at})


def request_error(exc: ValidationError, *, values_only: bool = False) -> errors.InvalidRequest:
    """The first pydantic error as OpenAI's 400: missing_required_parameter, invalid_type,
    invalid_value or a `rejected` rule's own code, naming the parameter (nested ones dotted, e.g.
    `expires_after.seconds`; the whole body is `body`). `values_only` reports type errors as
    invalid_value too (query strings are all text)."""
    err = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in err["loc"]) or "body"
    kind = err["type"]
    if kind == _REJECTED:
        ctx: dict[str, Any] = err["ctx"]
        where = param if ctx["at"] is None else f"{param}.{ctx['at']}"
        return errors.InvalidRequest(ctx["message"], param=where, code=ctx["code"])
    if kind == "missing":
        return errors.missing(param)
    if kind in _TYPE_NAMES and not values_only:
        return errors.invalid_type(param, _TYPE_NAMES[kind], err.get("input"))
    if kind == "string_pattern_mismatch":
        return errors.invalid_value(param, f"Invalid value for '{param}': {err.get('input')!r} is not a valid id.")
    return errors.invalid_value(param, f"Invalid value for '{param}': {err['msg']}.")


def parse_request(model: type[M], data: Any, *, strict: bool | None = None, values_only: bool = False) -> M:
    """`data` validated by `model` (`strict` for nested models too), or the OpenAI 400 of its first
    problem."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise request_error(exc, values_only=values_only) from None
