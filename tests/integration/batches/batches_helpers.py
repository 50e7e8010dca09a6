"""Helpers for the batches API tests: API Gateway REST proxy events in, decoded answers out.
(A uniquely named module, not conftest, so other test folders' helpers cannot shadow it.)"""
from __future__ import annotations

import json
import uuid

TABLE = "bg-state"
KEYS_TABLE = "bg-keys"
BUCKET = "bg-bucket"
BUS = "bg-bus"
STATE_MACHINE = "bg-batch"
PASS_DEFINITION = json.dumps({"StartAt": "Noop", "States": {"Noop": {"Type": "Pass", "End": True}}})


def make_event(method: str, path: str, *, tenant: str | None = "acme", body: str | None = None,
               headers: dict | None = None, query: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": False,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/prod{path}",
                           "stage": "prod", "requestId": str(uuid.uuid4()),
                           "identity": {"sourceIp": "127.0.0.1"},
                           "authorizer": {"tenant": tenant, "principalId": "k"} if tenant else {}},
    }


class Answer:
    def __init__(self, raw: dict):
        self.raw = raw
        self.status = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        for k, v in (raw.get("multiValueHeaders") or {}).items():
            self.headers.setdefault(k.lower(), v[0] if isinstance(v, list) else v)
        self.body = json.loads(raw.get("body") or "null")

    @property
    def error(self) -> dict:
        return self.body["error"]


class FakeContext:
    function_name = "batches-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batches-api"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30000


def call(method: str, path: str, payload=None, *, raw_body: str | None = None, **kw) -> Answer:
    from batchgate.handlers.api_batches import handler

    body = raw_body if raw_body is not None else (json.dumps(payload) if payload is not None else None)
    return Answer(handler(make_event(method, path, body=body, **kw), FakeContext()))
