"""In-process Lambda runtime: every function deployed into moto runs here, in this process.

moto (with `lambda.use_docker: false`) routes every Invoke (the SDK, Step Functions tasks) to
`LambdaSimpleBackend.invoke`, which normally echoes the payload. `install()` replaces that one method
with `InProcessLambdas.invoke_for_moto`, which imports the function's Handler and calls it with a
Lambda-like context. The front door and the SQS pollers call `invoke()` directly (same path, no HTTP).
"""
from __future__ import annotations

import importlib
import json
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from batchgate.observability import logger


@dataclass(frozen=True)
class FunctionSpec:
    """What local mode needs of one deployed function (read from moto's Lambda backend)."""
    logical_id: str
    name: str
    arn: str
    handler: str
    timeout_seconds: int = 3
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)


class LambdaContext:
    """The attributes of the real runtime's context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec):
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InvokeResult:
    payload: Any  # the handler's JSON-able answer, or the Lambda error payload
    error: bool = False

    def payload_bytes(self) -> bytes:
        return json.dumps(self.payload, default=str).encode()


def error_payload(exc: BaseException) -> dict:
    """Lambda's error payload. Step Functions matches `errorType` against Retry/Catch ErrorEquals,
    so an engine error may name itself (`error_name`/`error_type` attribute) instead of its class."""
    error_type = getattr(exc, "error_name", None) or getattr(exc, "error_type", None) or type(exc).__name__
    return {"errorType": str(error_type), "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(exc)[-5:]}


class InProcessLambdas:
    """Registry of the deployed functions, keyed by name, ARN and template logical id."""

    def __init__(self) -> None:
        self._by_key: dict[str, FunctionSpec] = {}
        self._handlers: dict[str, Callable] = {}
        self._lock = threading.Lock()

    def register(self, spec: FunctionSpec) -> None:
        for key in (spec.name, spec.arn, spec.logical_id):
            self._by_key[key] = spec

    def spec(self, name_or_arn: str) -> FunctionSpec:
        if name_or_arn in self._by_key:
            return self._by_key[name_or_arn]
        # Qualified ARNs (":$LATEST", ":alias") and partial ARNs name the same function here.
        base = name_or_arn.split(":function:")[-1].split(":")[0]
        return self._by_key[base]

    @property
    def specs(self) -> list[FunctionSpec]:
        return list({s.name: s for s in self._by_key.values()}.values())

    def _handler(self, spec: FunctionSpec) -> Callable:
        with self._lock:
            fn = self._handlers.get(spec.handler)
            if fn is None:
                module_name, _, attr = spec.handler.rpartition(".")
                fn = getattr(importlib.import_module(module_name), attr)
                self._handlers[spec.handler] = fn
            return fn

    def preload(self) -> None:
        """Import every handler now (their cold starts). Imports racing in request threads leave
        half-initialized modules visible in sys.modules to code in other threads of this process,
        such as the openai SDK of an in-process test checking `sys.modules["httpx"]`."""
        for spec in self.specs:
            self._handler(spec)

    def invoke(self, name_or_arn: str, event: Any) -> InvokeResult:
        spec = self.spec(name_or_arn)
        try:
            result = self._handler(spec)(event, LambdaContext(spec))
        except Exception as exc:  # the Lambda runtime turns any exception into a function error
            if type(exc).__name__ != "Unauthorized" and str(exc) != "Unauthorized":
                logger.warning("local lambda %s raised %s: %s", spec.logical_id, type(exc).__name__, exc)
            return InvokeResult(error_payload(exc), error=True)
        return InvokeResult(result)

    def invoke_for_moto(self, function_name: str, qualifier: str | None, body: Any,
                        headers: Any, response_headers: dict) -> bytes:
        """Signature of `LambdaSimpleBackend.invoke`; sets the function-error header as Lambda does."""
        raw = body.decode() if isinstance(body, bytes) else body
        event = json.loads(raw) if raw else {}
        result = self.invoke(function_name, event)
        payload = result.payload_bytes()
        if result.error:
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["Content-Length"] = str(len(payload))
        return payload


_original_invoke: Callable | None = None


def install(runtime: InProcessLambdas) -> None:
    """Route moto's no-docker Lambda invokes to `runtime` (process-wide; undone by `uninstall`)."""
    global _original_invoke
    from moto.awslambda_simple.models import LambdaSimpleBackend

    if _original_invoke is None:
        _original_invoke = LambdaSimpleBackend.invoke

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        return runtime.invoke_for_moto(function_name, qualifier, body, headers, response_headers)

    LambdaSimpleBackend.invoke = invoke


def uninstall() -> None:
    global _original_invoke
    if _original_invoke is not None:
        from moto.awslambda_simple.models import LambdaSimpleBackend
        LambdaSimpleBackend.invoke = _original_invoke
        _original_invoke = None
