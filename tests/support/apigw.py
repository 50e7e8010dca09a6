"""API Gateway REST proxy events in, decoded handler answers out: what every HTTP test suite shares."""
from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable
from functools import cached_property

from batchgate_local.apigw import media_type_matches

# API Gateway's binary media types (infra/constructs/api.py BINARY_MEDIA_TYPES, checked equal by
# tests/infra): a body whose Content-Type matches reaches Lambda base64-encoded.
BINARY_TYPES = ("*/*",)

Handler = Callable[[dict, object], dict]


def make_event(method: str, path: str, *, tenant: str | None = "acme", body: bytes | str | None = None,
               headers: dict | None = None, query: dict | None = None) -> dict:
    """An API Gateway REST proxy event as Lambda receives it, the authorizer having resolved `tenant`
    (None: an unprotected route). Bytes of a text media type arrive as UTF-8 text, invalid bytes
    replaced; surrogates in a str body survive base64 so hostile inputs reach the handler as sent."""
    headers = dict(headers or {})
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "") or ""
    is_b64 = body is not None and media_type_matches(ctype, BINARY_TYPES)
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
    """What the handlers read from Lambda's context."""
    memory_limit_in_mb = 512

    def __init__(self, function_name: str = "api", request_id: str = "req-1"):
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 30000


class Answer:
    """A handler's proxy response, decoded: headers lower-cased (multiValueHeaders included), body bytes."""

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

    @cached_property
    def body(self):
        """The JSON body; None when empty."""
        return json.loads(self.content or b"null")

    @property
    def error(self) -> dict:
        return self.body["error"]

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.content[:300]!r}>"


def handler_for(path: str) -> Handler:
    """The API function API Gateway routes `path` to (imported late: handlers read settings)."""
    if path.startswith("/v1/uploads"):
        from batchgate.handlers.api_uploads import handler
    elif path.startswith("/v1/batches"):
        from batchgate.handlers.api_batches import handler
    else:
        from batchgate.handlers.api_files import handler
    return handler


def call(method: str, path: str, *, handler: Handler | None = None, **event) -> Answer:
    """Invokes `handler` (default: the one routed by path) with make_event(method, path, **event)."""
    return Answer((handler or handler_for(path))(make_event(method, path, **event), FakeContext()))


def call_json(method: str, path: str, payload=None, *, raw: str | bytes | None = None,
              headers: dict | None = None, **kw) -> Answer:
    """A JSON request: `payload` serialized, or `raw` sent as is (for malformed bodies)."""
    body = raw if raw is not None else (json.dumps(payload) if payload is not None else None)
    return call(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})}, **kw)


def multipart(parts: Iterable[tuple], boundary: str | None = None, closing: bool = True) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type from parts in the given order: (name, filename or
    None, data) gets `Content-Type: application/octet-stream` when it has a filename; a fourth item
    sets that header (None: none)."""
    boundary = boundary or uuid.uuid4().hex
    out = bytearray()
    for name, filename, data, *rest in parts:
        ctype = rest[0] if rest else ("application/octet-stream" if filename is not None else None)
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode("utf-8", "surrogatepass")
        if ctype is not None:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    if closing:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
