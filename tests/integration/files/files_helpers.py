"""Helpers for the Files/Uploads API tests: the shared API Gateway helpers (support.apigw), and the
official openai SDK wired to the handlers through an httpx transport (no network).
(A uniquely named module, not conftest, so other test folders' helpers cannot shadow it.)"""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import openai
import requests
from support import apigw
from support.apigw import call, call_json  # noqa: F401 (re-exported to the tests)

TABLE = "bg-state"
BUCKET = "bg-bucket"
API_HOST = "batchgate.test"


def multipart(fields: dict[str, str], files: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body like the SDK's (httpx) one: fields first, then files, each file part
    typed application/octet-stream; a None filename sends a part unnamed."""
    return apigw.multipart([(name, None, value.encode()) for name, value in fields.items()]
                           + [(name, filename, data, "application/octet-stream")
                              for name, (filename, data) in files.items()])


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
