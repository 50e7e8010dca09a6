"""The console in a real browser: local mode on free ports, Debian's Chromium driven by Playwright.

Package scope (this folder is a package) for the same reason as tests/e2e: LocalService changes
process-wide state, torn down when these tests end."""
from __future__ import annotations

import json
import socket

import pytest

from batchgate_local import LocalService
from batchgate_local.chromium import chromium, missing_reason
from batchgate_local.dev_upstream import start_dev_upstream

KEY, TENANT = "sk-browser-tenant-a", "tenant-a"
KEY_B, TENANT_B = "sk-browser-tenant-b", "tenant-b"
# Files above this are answered by a presigned S3 URL instead of inline (content_redirect_bytes):
# small enough that one test's output crosses it, large enough that the others' stay inline.
REDIRECT_BYTES = 16 * 1024
# POST /v1/files (and each upload part) takes at most this: a larger file goes through the Uploads API.
DIRECT_BYTES = 32 * 1024
TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def console_service():
    reason = missing_reason()
    if reason:
        pytest.fail(f"the browser tests need Chromium and Playwright: {reason}")
    upstream, upstream_url = start_dev_upstream(host="127.0.0.1", port=0)
    try:
        with LocalService(port=free_port(), api_keys={KEY: TENANT, KEY_B: TENANT_B}, upstream_url=upstream_url,
                          completion_window_seconds=120,
                          overrides={"content_redirect_bytes": REDIRECT_BYTES,
                                     "max_direct_upload_bytes": DIRECT_BYTES}) as service:
            yield service
    finally:
        upstream.shutdown()


@pytest.fixture(scope="package")
def browser_context():
    with chromium(viewport={"width": 1280, "height": 900}) as context:
        context.set_default_timeout(TIMEOUT_MS)
        yield context


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    yield page
    page.close()


def console_url(service: LocalService) -> str:
    return service.base_url.removesuffix("/v1") + "/console"


def jsonl(rows) -> bytes:
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


def chat_line(i: int, content: str | None = None, prefix: str = "req") -> dict:
    return {"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "dev-model", "messages": [{"role": "user", "content": content or f"hello {i}"}]}}
