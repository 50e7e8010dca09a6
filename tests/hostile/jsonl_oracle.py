"""An independent oracle for batch input files: what the product promises to accept, written from
reference §3/§12 and the validator's docstring, not from its code.

The JSON rule ("strict JSON"): a line is accepted iff it is RFC 8259 JSON text with these limits,
which RFC 8259 §9 allows a parser to set and which the product takes on by using orjson:
- the bytes are valid UTF-8 (no overlong forms, no encoded surrogates) and there is no BOM (§8.1: a
  parser MAY ignore a BOM; the product treats it as a bad line 1, which the message names);
- no NaN / Infinity / -Infinity (not JSON at all);
- no lone surrogate escape such as "\\ud800" (grammatical in RFC 8259 but not a Unicode string: §8.2
  says the behaviour is unpredictable; accepting it would break re-encoding for the upstream);
- every number is finite as an IEEE double (1e400 or a 400-digit integer is refused, not made inf);
- nesting depth at most 1024 arrays/objects.
Python's json is used for the grammar (it is strict except for NaN/Infinity, lone surrogates and
unbounded numbers, which are checked here on top).

The batch rules: lines split on b"\\n" only (a CR before it is JSON whitespace, so CRLF files work);
blank (JSON-whitespace-only) lines are ignored when only blank lines follow, otherwise each is an
`invalid_json_line`; every other line is one request whose first problem, in the order below, is its
one error; errors stop at 1,000; request 50,001 stops checking with one `too_many_tasks` (line null).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

MAX_REQUESTS = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_ERRORS = 1_000
MAX_DEPTH = 1024
JSON_WS = b" \t\r\n"
MODEL_REQUIRED = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
REQUIRED_BODY_FIELD = {"/v1/chat/completions": "messages", "/v1/embeddings": "input",
                       "/v1/moderations": "input"}


class NotJson(Exception):
    pass


def _reject_constant(name: str):
    raise NotJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson(f"{text[:20]} overflows a double")
    return value


def _int(text: str):
    # orjson keeps 64-bit integers exact and reads bigger ones as doubles.
    if len(text) <= 21:
        value = int(text)
        if -(2 ** 63) <= value < 2 ** 64:
            return value
    return _finite_float(text)


def _depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _has_surrogate(value: Any, *, into_objects: bool = True) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                return True
        elif isinstance(v, dict) and into_objects:
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _object(pairs: list) -> dict:
    # Checked per member, before duplicate keys collapse: a lone surrogate in a member that a later
    # duplicate overrides still makes the text invalid. Inner objects were checked when built.
    for key, value in pairs:
        if _has_surrogate(key) or _has_surrogate(value, into_objects=False):
            raise NotJson("lone surrogate")
    return dict(pairs)


def strict_json(data: bytes) -> Any:
    """The parsed value of one line, or NotJson."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJson("not UTF-8") from exc
    if _depth(text) > MAX_DEPTH:
        raise NotJson("too deep")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10_000))
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                           parse_int=_int, object_pairs_hook=_object)
    except NotJson:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; so is a BOM
        raise NotJson(str(exc)) from exc
    finally:
        sys.setrecursionlimit(old)
    if _has_surrogate(value):
        raise NotJson("lone surrogate")
    return value


@dataclass
class Expected:
    errors: list[tuple[str, int | None, str | None]] = field(default_factory=list)  # (code, line, param)
    total: int = 0
    model: str | None = None
    request_lines: list[int] = field(default_factory=list)  # 0-based indexes of the accepted requests

    @property
    def ok(self) -> bool:
        return not self.errors


def _embedding_inputs(body: dict) -> int:
    value = body.get("input")
    if isinstance(value, list) and value and not all(type(v) is int for v in value):
        return len(value)  # several strings or several token arrays
    return 1  # one string, or one token array


def expected(data: bytes, endpoint: str) -> Expected:
    """What validating `data` (a whole batch input file) for `endpoint` must report."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # a final newline ends the last line; it does not start another
    last_request = max((i for i, ln in enumerate(lines) if ln.strip(JSON_WS)), default=-1)
    out = Expected()
    seen: set[str] = set()
    model_set = False
    inputs = 0

    def error(code: str, line: int | None, param: str | None = None) -> bool:
        out.errors.append((code, line, param))
        return len(out.errors) >= MAX_ERRORS

    for i, raw in enumerate(lines[:last_request + 1]):
        number = i + 1
        if not raw.strip(JSON_WS):
            if error("invalid_json_line", number):
                break
            continue
        out.total += 1
        if out.total > MAX_REQUESTS:
            error("too_many_tasks", None)
            break
        problem = _line_problem(raw, endpoint, seen, out, model_set)
        if problem is None:
            model_set = True
            if endpoint == "/v1/embeddings":
                body = strict_json(raw)["body"]
                before, inputs = inputs, inputs + _embedding_inputs(body)
                if inputs > MAX_EMBEDDING_INPUTS >= before:
                    problem = ("too_many_embedding_inputs", "body.input")
            if problem is None:
                out.request_lines.append(i)
                continue
        if error(problem[0], number, problem[1]):
            break
    if not out.errors and out.total == 0:
        out.errors.append(("empty_file", None, None))
    return out


def _line_problem(raw: bytes, endpoint: str, seen: set[str], out: Expected,
                  model_set: bool) -> tuple[str, str | None] | None:
    """The first problem of one request line (None: a good line, now recorded in `seen`/`out`)."""
    try:
        obj = strict_json(raw)
    except NotJson:
        return ("invalid_json_line", None)
    if not isinstance(obj, dict):
        return ("invalid_json_line", None)
    for name in ("custom_id", "method", "url", "body"):
        if obj.get(name) is None:
            return ("missing_required_parameter", name)
    if not isinstance(obj["custom_id"], str):
        return ("invalid_request", "custom_id")
    if obj["method"] != "POST":
        return ("invalid_request", "method")
    if obj["url"] != endpoint:
        return ("invalid_url", "url")
    body = obj["body"]
    if not isinstance(body, dict):
        return ("invalid_request", "body")
    model = body.get("model")
    if model is None and endpoint in MODEL_REQUIRED:
        return ("invalid_request", "body.model")
    if model is not None and not isinstance(model, str):
        return ("invalid_request", "body.model")
    required = REQUIRED_BODY_FIELD.get(endpoint)
    if required and body.get(required) is None:
        return ("invalid_request", f"body.{required}")
    if body.get("stream") is True:
        return ("streaming_unsupported", "body.stream")
    if model_set and model != out.model:
        return ("mismatched_model", "body.model")
    if not model_set:
        out.model = model
    if obj["custom_id"] in seen:
        return ("duplicate_custom_id", "custom_id")
    seen.add(obj["custom_id"])
    return None
