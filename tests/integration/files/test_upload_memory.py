"""Completing a large upload keeps memory bounded. moto runs as a separate server process here, so
tracemalloc sees only this process: our code and botocore, not moto's copy of the object.

BATCHGATE_MEMTEST_MB sets the upload size (default 64; the report's 200 MB figure used 200)."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import tracemalloc

import boto3
import pytest
from support.aws_world import create_state_table

from batchgate import aws, settings
from batchgate.adapters.file_store import FileStore
from batchgate.adapters.upload_store import UploadStore
from batchgate.domain import files, uploads

MIB = 1024 * 1024
SIZE_MB = int(os.environ.get("BATCHGATE_MEMTEST_MB", "64"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(monkeypatch):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        for k, v in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
                     "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(k, v)
        aws.reset_clients()
        settings.reset_settings()
        create_state_table("t")
        boto3.client("s3").create_bucket(Bucket="bg-memtest")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        aws.reset_clients()


def test_complete_of_large_upload_is_memory_bounded(moto_server):
    line = b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}\n'
    part = (line * (4 * MIB // len(line) + 1))[:4 * MIB - 1] + b"\n"
    n_parts = SIZE_MB * MIB // len(part)
    repo, store = UploadStore("t", "bg-memtest"), FileStore("t", "bg-memtest")
    up = uploads.create_upload(repo, "acme", {"filename": "big.jsonl", "purpose": "batch",
                                              "bytes": n_parts * len(part), "mime_type": "application/jsonl"})
    pids = [uploads.add_part(repo, "acme", up["id"], files.FilePart(part), max_part_bytes=4 * MIB)["id"]
            for _ in range(n_parts)]
    expected = hashlib.sha256()
    for _ in range(n_parts):
        expected.update(part)
    del part

    tracemalloc.start()
    started = time.time()
    done = uploads.complete_upload(repo, store, "acme", up["id"], {"part_ids": pids})
    elapsed = time.time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    size = n_parts * 4 * MIB
    print(f"\ncomplete of {size / MIB:.0f} MiB in {n_parts} parts: peak traced memory "
          f"{peak / MIB:.1f} MiB, {elapsed:.1f} s")
    assert done["status"] == "completed" and done["file"]["bytes"] == size
    got = hashlib.sha256()
    for chunk in store.open_stream(store.get("acme", done["file"]["id"])).iter_chunks(MIB):
        got.update(chunk)
    assert got.digest() == expected.digest()
    # one S3 part (8 MiB, plus the chunk that tipped it over) and one read chunk, with slack
    assert peak < 24 * MIB
