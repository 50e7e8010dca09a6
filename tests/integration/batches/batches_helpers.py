"""Helpers for the batches API tests: the shared API Gateway helpers (support.apigw) aimed at the
batches handler, whose every answer is JSON.
(A uniquely named module, not conftest, so other test folders' helpers cannot shadow it.)"""
from __future__ import annotations

from support import apigw
from support.apigw import Answer, FakeContext  # noqa: F401 (re-exported to the tests)

TABLE = "bg-state"
KEYS_TABLE = "bg-keys"
BUCKET = "bg-bucket"
BUS = "bg-bus"
STATE_MACHINE = "bg-batch"


def make_event(method: str, path: str, *, headers: dict | None = None, **kw) -> dict:
    """An event that says JSON unless the caller's headers say otherwise."""
    return apigw.make_event(method, path, headers={"Content-Type": "application/json", **(headers or {})}, **kw)


def call(method: str, path: str, payload=None, *, raw_body: str | None = None, **kw) -> Answer:
    from batchgate.handlers.api_batches import handler

    answer = apigw.call_json(method, path, payload, raw=raw_body, handler=handler, **kw)
    answer.body  # every batches answer is JSON: fail here, at the call, when one is not
    return answer
