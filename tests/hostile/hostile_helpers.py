"""Helpers for the hostile-input suites: API Gateway REST proxy events in, decoded answers out, the
contract every answer must meet, and a snapshot of everything stored.
(A uniquely named module, not conftest, so other test folders' helpers cannot shadow it.)"""
from __future__ import annotations

import base64
import json
import time
import uuid

from hypothesis import HealthCheck, settings

# derandomize: the same examples on every run, so a CI failure reproduces; no deadline because moto
# timings vary on shared runners. Applied per test (not as a global profile, which would change other
# suites' hypothesis settings); each test sets its own example budget so the suite stays < 90 s.
_HOSTILE = settings(derandomize=True, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


def budget(max_examples: int) -> settings:
    return settings(_HOSTILE, max_examples=max_examples)


TABLE = "hostile-state"
KEYS_TABLE = "hostile-keys"
BUCKET = "hostile-bucket"
BUS = "hostile-bus"
STATE_MACHINE = "hostile-batch"
PASS_DEFINITION = json.dumps({"StartAt": "Noop", "States": {"Noop": {"Type": "Pass", "End": True}}})
# API Gateway's binary media types (design.md): these bodies reach Lambda base64-encoded.
BINARY_TYPES = ("multipart/form-data", "application/octet-stream", "application/binary", "application/jsonl")
GOOD_LINE = b'{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'


def make_event(method: str, path: str, *, tenant: str | None = "tenant-a", body: bytes | str | None = None,
               headers: dict | None = None, query: dict | None = None) -> dict:
    headers = dict(headers or {})
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "") or ""
    is_b64 = body is not None and ctype.lower().startswith(BINARY_TYPES)
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if is_b64 else body.decode("utf-8", "replace")
    elif isinstance(body, str) and is_b64:
        body = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode()
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": is_b64,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/prod{path}",
                           "stage": "prod", "requestId": str(uuid.uuid4()),
                           "identity": {"sourceIp": "127.0.0.1"},
                           "authorizer": {"tenant": tenant, "principalId": "k"} if tenant else {}},
    }


class FakeContext:
    function_name = "api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"
    aws_request_id = "req-hostile"

    def get_remaining_time_in_millis(self) -> int:
        return 30000


class Answer:
    def __init__(self, raw: dict):
        self.raw = raw
        self.status = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        for k, v in (raw.get("multiValueHeaders") or {}).items():
            self.headers.setdefault(k.lower(), v[0] if isinstance(v, list) else v)
        body = raw.get("body") or ""
        self.content = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()

    def json(self):
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.content[:300]!r}>"


def _handler(path: str):
    if path.startswith("/v1/uploads"):
        from batchgate.handlers.api_uploads import handler
    elif path.startswith("/v1/batches"):
        from batchgate.handlers.api_batches import handler
    else:
        from batchgate.handlers.api_files import handler
    return handler


def call(method: str, path: str, **kw) -> Answer:
    return Answer(_handler(path)(make_event(method, path, **kw), FakeContext()))


def call_json(method: str, path: str, payload=None, *, raw: str | bytes | None = None, **kw) -> Answer:
    body = raw if raw is not None else (json.dumps(payload) if payload is not None else None)
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return call(method, path, body=body, headers=headers, **kw)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str | None = None,
              closing: bool = True) -> tuple[bytes, str]:
    """A multipart/form-data body from (name, filename or None, data) parts, in the given order."""
    boundary = boundary or uuid.uuid4().hex
    out = bytearray()
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode("utf-8", "surrogatepass")
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    if closing:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def upload_file(tenant: str, data: bytes = GOOD_LINE, filename: str = "in.jsonl", purpose: str = "batch") -> dict:
    body, ctype = multipart([("purpose", None, purpose.encode()), ("file", filename, data)])
    answer = call("POST", "/v1/files", tenant=tenant, body=body, headers={"Content-Type": ctype})
    assert answer.status == 200, answer
    return answer.json()


def store_file(tenant: str, data: bytes, purpose: str = "batch") -> str:
    """Registers a file straight through the files adapter (for inputs bigger than a direct upload)."""
    from batchgate import ids
    from batchgate.adapters.file_store import FileStore

    store, file_id, now = FileStore(TABLE, BUCKET), ids.file_id(), int(time.time())
    key = store.file_key(tenant, file_id)
    store.put_bytes(key, data)
    store.register(tenant, file_id=file_id, filename="in.jsonl", purpose=purpose, bytes=len(data),
                   s3_key=key, created_at=now, expires_at=now + 86400)
    return file_id


# -- the contract ----------------------------------------------------------------------------------
def assert_contract(answer: Answer) -> None:
    """Every answer is a 2xx/3xx object or OpenAI's error envelope with all four keys and a 4xx status."""
    assert answer.status < 500, answer
    if answer.status >= 400:
        body = answer.json()
        assert set(body) == {"error"}, answer
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}, answer
        assert isinstance(err["message"], str) and err["message"], answer
        assert err["type"] == "invalid_request_error", answer
        assert err["param"] is None or isinstance(err["param"], str), answer
        assert err["code"] is None or isinstance(err["code"], str), answer
    elif answer.status == 200 and answer.headers.get("content-type", "").startswith("application/json"):
        assert isinstance(answer.json(), dict), answer


def snapshot() -> dict:
    """Everything stored: every item of both tables and every object's ETag and size. Read from moto's
    in-memory backends: a Scan through boto3 re-serializes every item and costs ~1 s per call here."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends

    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables
    state = {name: sorted(json.dumps(item.to_json(), sort_keys=True) for item in tables[name].all_items())
             for name in (TABLE, KEYS_TABLE)}
    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[BUCKET]
    state["s3"] = {key: (obj.etag, obj.size) for key, obj in bucket.keys.items()}
    return state
