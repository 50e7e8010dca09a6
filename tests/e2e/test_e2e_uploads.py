"""Uploads API: a large batch file through client.uploads.upload_file_chunked, downloaded back intact."""
from __future__ import annotations

import hashlib
import os

import pytest

pytestmark = pytest.mark.e2e

PART = 4 * 1024 * 1024


def _write_jsonl(path, target_bytes: int, batch_lines) -> bytes:
    block = batch_lines(2000, prefix="big")
    reps = target_bytes // len(block) + 1
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for r in range(reps):
            # distinct custom_ids would need rewriting each block; uniqueness is not checked on upload
            f.write(block)
            digest.update(block)
    return digest.digest()


def _roundtrip(client, path, expected_digest: bytes) -> None:
    size = os.path.getsize(path)

    upload = client.uploads.upload_file_chunked(file=path, mime_type="application/jsonl", purpose="batch",
                                                part_size=PART)

    assert upload.status == "completed"
    file = upload.file
    assert file.bytes == size
    assert file.purpose == "batch"
    digest = hashlib.sha256()
    with client.files.with_streaming_response.content(file.id) as resp:
        for chunk in resp.iter_bytes():
            digest.update(chunk)
    assert digest.digest() == expected_digest
    assert client.files.retrieve(file.id).bytes == size


def test_chunked_upload_of_25_mb_downloads_byte_identical(client_a, batch_lines, tmp_path):
    path = tmp_path / "big.jsonl"
    expected = _write_jsonl(path, 25 * 1024 * 1024, batch_lines)

    _roundtrip(client_a, path, expected)


@pytest.mark.slow
def test_chunked_upload_of_200_mb(client_a, batch_lines, tmp_path):
    path = tmp_path / "huge.jsonl"
    expected = _write_jsonl(path, 199 * 1024 * 1024, batch_lines)

    _roundtrip(client_a, path, expected)
