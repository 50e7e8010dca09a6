"""Conformance fixtures: local mode started once for this package (tests/conformance/__init__.py scopes it,
as tests/e2e does), one API key, and a set of real objects in every state a response can describe.

The settings mirror tests/e2e/conftest.py (own dev upstream passed as --upstream-url, 60 s window) so
both packages reuse the same cached template.
"""
from __future__ import annotations

import io
import json
import socket
from dataclasses import dataclass

import openai
import pytest
from support.sdk import TERMINAL, wait_for_batch

from batchgate_local import LocalService
from batchgate_local.dev_upstream import start_dev_upstream

KEY, TENANT = "sk-conformance", "conformance"
COMPLETION_WINDOW_SECONDS = 60
# Over the 4 MiB content-redirect threshold: its content comes back as a 302 to S3.
LARGE_FILE_BYTES = 4 * 1024 * 1024 + 512
PART_BYTES = 4 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_lines(n: int, prefix: str = "req", content: str = "hello") -> bytes:
    return b"".join(json.dumps({
        "custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "dev-model", "messages": [{"role": "user", "content": f"{content} {i}"}]},
    }).encode() + b"\n" for i in range(n))


def make_client(service: LocalService, *, strict: bool = True) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.base_url, api_key=KEY, max_retries=0, timeout=60,
                         _strict_response_validation=strict)


@pytest.fixture(scope="package")
def local_service():
    server, upstream = start_dev_upstream(host="127.0.0.1", port=0)
    try:
        with LocalService(port=free_port(), api_keys={KEY: TENANT}, upstream_url=upstream,
                          completion_window_seconds=COMPLETION_WINDOW_SECONDS) as service:
            yield service
    finally:
        server.shutdown()


@pytest.fixture(scope="package")
def client(local_service) -> openai.OpenAI:
    return make_client(local_service)


@dataclass(frozen=True)
class Seeded:
    """Objects in each state a response describes; ids feed both the SDK tests and schemathesis."""
    input_file: str
    other_file: str
    large_file: str
    completed_batch: str
    failed_batch: str
    cancelled_batch: str
    pending_upload: str
    completed_upload: str
    cancelled_upload: str

    def file_ids(self) -> list[str]:
        return [self.input_file, self.other_file, self.large_file]

    def batch_ids(self) -> list[str]:
        return [self.completed_batch, self.failed_batch, self.cancelled_batch]

    def upload_ids(self) -> list[str]:
        return [self.pending_upload, self.completed_upload, self.cancelled_upload]


@pytest.fixture(scope="package")
def seeded(client) -> Seeded:
    def upload(data: bytes, name: str = "in.jsonl", purpose="batch"):
        return client.files.create(file=(name, io.BytesIO(data), "application/jsonl"), purpose=purpose)

    def create(file_id: str):
        return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                     completion_window="24h", metadata={"suite": "conformance"})

    input_file = upload(chat_lines(3))
    other_file = upload(b"notes", name="notes.txt", purpose="user_data")
    failed_input = upload(chat_lines(2) + b"{not json}\n")
    # Slow lines keep this batch running long enough to be cancelled mid-flight.
    slow_input = upload(chat_lines(12, prefix="slow", content="__sleep_ms:2000__"))

    completed = create(input_file.id)
    failed = create(failed_input.id)
    cancelled = create(slow_input.id)
    wait_for_batch(client, cancelled.id, statuses={"in_progress"} | TERMINAL, timeout=90)
    client.batches.cancel(cancelled.id)

    large = client.uploads.upload_file_chunked(
        file=chat_lines(1) + b" " * (LARGE_FILE_BYTES - len(chat_lines(1)) - 1) + b"\n",
        filename="large.jsonl", bytes=LARGE_FILE_BYTES, mime_type="application/jsonl", purpose="batch",
        part_size=PART_BYTES)
    pending = client.uploads.create(bytes=5, filename="p.jsonl", mime_type="application/jsonl", purpose="batch")
    cancelled_upload = client.uploads.create(bytes=5, filename="c.jsonl", mime_type="application/jsonl",
                                             purpose="batch")
    client.uploads.cancel(cancelled_upload.id)

    for batch_id in (completed.id, failed.id, cancelled.id):
        assert wait_for_batch(client, batch_id, timeout=90).status in TERMINAL, batch_id
    return Seeded(input_file=input_file.id, other_file=other_file.id, large_file=large.file.id,
                  completed_batch=completed.id, failed_batch=failed.id, cancelled_batch=cancelled.id,
                  pending_upload=pending.id, completed_upload=large.id, cancelled_upload=cancelled_upload.id)
