"""FileStore, the adapter other pieces use (batches read inputs, finalize registers outputs)."""
from __future__ import annotations

import time

import pytest
from files_helpers import BUCKET, TABLE

from batchgate.adapters.file_store import FileStore
from batchgate.models.files import file_object

MIB = 1024 * 1024


@pytest.fixture
def store(aws_env):
    return FileStore(TABLE, BUCKET)


def test_register_get_stream_and_ranges(store, s3):
    key = store.file_key("acme", "file-" + "A" * 24)
    assert key == "files/acme/file-" + "A" * 24
    data = b"".join(f'{{"line":{i}}}\n'.encode() for i in range(100))
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    now = int(time.time())
    rec = store.register("acme", file_id="file-" + "A" * 24, filename="batch_x_output.jsonl",
                         purpose="batch_output", bytes=len(data), s3_key=key, created_at=now, expires_at=None)
    got = store.get("acme", rec.id)
    assert got.s3_key == key and file_object(got) == file_object(rec)
    assert file_object(got)["purpose"] == "batch_output" and file_object(got)["expires_at"] is None
    assert store.get("other", rec.id) is None
    assert store.open_stream(got).read() == data
    assert store.read_range(got.s3_key, 10, 25) == data[10:25]
    assert store.read_range(got.s3_key, 5, 5) == b""
    assert store.read_range(got.s3_key, len(data) - 3, len(data)) == data[-3:]
    with pytest.raises(Exception):  # ids are create-only
        store.register("acme", file_id=rec.id, filename="x", purpose="batch", bytes=1, s3_key=key,
                       created_at=now, expires_at=None)


def test_writer_regroups_odd_writes_into_large_parts(store, s3):
    key = store.file_key("acme", "file-" + "B" * 24)
    writer = store.writer(key, part_bytes=5 * MIB)
    pieces = [bytes([i % 251]) * (3 * MIB + i) for i in range(5)]  # 3 MiB writes: too small as S3 parts
    for p in pieces:
        writer.write(p)
    assert writer.close() == sum(map(len, pieces))
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == sum(map(len, pieces)) and head["ETag"].endswith('-3"')
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"".join(pieces)


def test_writer_small_object_is_one_put_and_abort_leaves_nothing(store, s3):
    key = store.file_key("acme", "file-" + "C" * 24)
    writer = store.writer(key)
    writer.write(b"abc")
    writer.close()
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"abc"
    other = store.writer(key + "x", part_bytes=5 * MIB)
    other.write(b"z" * (6 * MIB))
    other.abort()
    other.abort()  # idempotent
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=key + "x")


def test_abort_after_close_keeps_the_object(store, s3):
    key = store.file_key("acme", "file-" + "D" * 24)
    writer = store.writer(key, part_bytes=5 * MIB)
    writer.write(b"q" * (5 * MIB + 1))
    writer.close()
    writer.abort()
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 5 * MIB + 1
