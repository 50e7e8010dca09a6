"""In-process Lambda runtime: every function deployed into moto runs here, in this process.

moto (with `lambda.use_docker: false`) routes every Invoke (the SDK, Step Functions tasks) to
`LambdaSimpleBackend.invoke`, which normally echoes the payload. `install()` replaces that one method
with `InProcessLambdas.invoke_for_moto`, which imports the function's Handler and calls it with a
Lambda-like context. The front door and the SQS pollers call `invoke()` directly (same path, no HTTP).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        self._serial: dict[str, OneAtATime] = {}
        self._lock = threading.Lock()
        self.guard = None   # local/iam.py's IamGuard, once LocalService installs it

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
                module = importlib.import_module(module_name)
                fn = getattr(module, attr)
                self._handlers[spec.handler] = fn
                if _holds_process_state(module):
                    self._serial[spec.handler] = POWERTOOLS_STATE
            return fn

    def preload(self) -> None:
        """Import every handler now (their cold starts). Imports racing in request threads leave
        half-initialized modules visible in sys.modules to code in other threads of this process,
        such as the openai SDK of an in-process test checking `sys.modules["httpx"]`."""
        for spec in self.specs:
            self._handler(spec)

    def invoke(self, name_or_arn: str, event: Any) -> InvokeResult:
        from batchgate_local.iam import as_function

        spec = self.spec(name_or_arn)
        try:
            handler = self._handler(spec)
            with self._serial.get(spec.handler, _NO_LOCK), as_function(spec.logical_id):  # its role's calls
                result = handler(event, LambdaContext(spec))
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


def _holds_process_state(module) -> bool:
    """Powertools' event handler keeps the current event in class attributes (BaseRouter.current_event),
    shared by every resolver in the process. Lambda runs one invocation per process, so that is safe
    there; in local mode two overlapping API requests would read each other's event (a POST /v1/files
    seeing a GET's headers: "expects a multipart/form-data body"). Such handlers run one at a time."""
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    return isinstance(getattr(module, "app", None), BaseRouter)


class OneAtATime:
    """A lock that counts the invocations waiting for it (so a test can tell, by event, that one waits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Condition()
        self.waiting = 0

    def __enter__(self):
        with self.changed:
            self.waiting += 1
            self.changed.notify_all()
        self._lock.acquire()
        with self.changed:
            self.waiting -= 1
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


# Every handler holding Powertools' process-wide state takes this one lock.
POWERTOOLS_STATE = OneAtATime()
_NO_LOCK = contextlib.nullcontext()
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
