"""Helpers for the Files/Uploads API tests: API Gateway REST proxy events, handler answers, and
the official openai SDK wired to the handlers through an httpx transport (no network).
(A uniquely named module, not conftest, so other test folders' helpers cannot shadow it.)"""
from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import urlsplit

import httpx
import openai
import requests

TABLE = "bg-state"
BUCKET = "bg-bucket"
BINARY_TYPES = ("multipart/form-data", "application/octet-stream", "application/binary", "application/jsonl")
API_HOST = "batchgate.test"


def make_event(method: str, path: str, *, tenant: str | None = "acme", body: bytes | str | None = None,
               headers: dict | None = None, query: dict | None = None) -> dict:
    """An API Gateway REST proxy event as Lambda receives it (binary media types base64-encoded)."""
    headers = dict(headers or {})
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    is_b64 = body is not None and any(ctype.startswith(t) for t in BINARY_TYPES)
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if is_b64 else body.decode("utf-8")
    elif isinstance(body, str) and is_b64:
        body = base64.b64encode(body.encode()).decode()
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": is_b64,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/prod{path}",
                           "stage": "prod", "requestId": str(uuid.uuid4()),
                           "identity": {"sourceIp": "127.0.0.1"},
                           "authorizer": {"tenant": tenant} if tenant else {}},
    }


class Answer:
    """A handler's proxy response, decoded."""

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

    @property
    def error(self) -> dict:
        return self.json()["error"]


class FakeContext:
    function_name = "api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30000


def _handler_for(path: str):
    if path.startswith("/v1/uploads"):
        from batchgate.handlers.api_uploads import handler
    else:
        from batchgate.handlers.api_files import handler
    return handler


def call(method: str, path: str, **kw) -> Answer:
    return Answer(_handler_for(path)(make_event(method, path, **kw), FakeContext()))


def call_json(method: str, path: str, payload=None, **kw) -> Answer:
    body = json.dumps(payload) if payload is not None else None
    return call(method, path, body=body, headers={"Content-Type": "application/json"}, **kw)


def multipart(fields: dict[str, str], files: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body like the SDK's (httpx) one; a None filename sends a part unnamed."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, (filename, data) in files.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _transport(request: httpx.Request) -> httpx.Response:
    url = urlsplit(str(request.url))
    if url.hostname != API_HOST:
        # A redirect to a presigned S3 URL: moto answers `requests` calls in-process.
        assert "authorization" not in request.headers, "the SDK must not send its key to S3"
        resp = requests.get(str(request.url), timeout=10)
        return httpx.Response(resp.status_code, content=resp.content)
    tenant = request.headers["authorization"].removeprefix("Bearer ")
    query = dict(httpx.QueryParams(url.query)) or None
    answer = call(request.method, url.path, tenant=tenant, body=request.read() or None,
                  headers=dict(request.headers), query=query)
    return httpx.Response(answer.status, content=answer.content, headers=answer.headers)


def sdk_client(tenant: str = "acme") -> openai.OpenAI:
    """The official SDK; the API key doubles as the tenant name (the authorizer is not under test)."""
    return openai.OpenAI(api_key=tenant, base_url=f"https://{API_HOST}/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(_transport),
                                                  follow_redirects=True))
