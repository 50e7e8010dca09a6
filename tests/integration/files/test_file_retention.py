"""File objects carry the `retention-days` tag the bucket's lifecycle rules act on (moto keeps tags)."""
from __future__ import annotations

import json

from files_helpers import BUCKET, call, call_json, multipart

from batchgate.adapters.file_store import FileStore
from batchgate.domain.files import retention_tag

JSONL = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}\n'
MIB = 1024 * 1024


def tags(s3, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}


def direct_upload(purpose="batch", filename="in.jsonl", data=JSONL, extra=None) -> dict:
    body, ctype = multipart({"purpose": purpose, **(extra or {})}, {"file": (filename, data)})
    ans = call("POST", "/v1/files", body=body, headers={"Content-Type": ctype})
    assert ans.status == 200, ans.content
    return ans.json()


def uploads_api_upload(data: bytes, **kw) -> dict:
    up = call_json("POST", "/v1/uploads", {"filename": "in.jsonl", "purpose": "batch", "bytes": len(data),
                                           "mime_type": "application/jsonl", **kw}).json()
    body, ctype = multipart({}, {"data": ("blob", data)})
    part = call("POST", f"/v1/uploads/{up['id']}/parts", body=body, headers={"Content-Type": ctype}).json()
    done = call_json("POST", f"/v1/uploads/{up['id']}/complete", {"part_ids": [part["id"]]})
    assert done.status == 200, done.json()
    return done.json()["file"]


def test_direct_batch_upload_is_tagged_with_the_default_30_days(aws_env, s3):
    f = direct_upload()
    assert tags(s3, f"files/acme/{f['id']}") == {"retention-days": "30"}


def test_direct_upload_expiring_in_one_hour_is_tagged_one_day(aws_env, s3):
    f = direct_upload(purpose="user_data", filename="a.txt",
                      extra={"expires_after": json.dumps({"anchor": "created_at", "seconds": 3600})})
    assert f["expires_at"] == f["created_at"] + 3600
    assert tags(s3, f"files/acme/{f['id']}") == {"retention-days": "1"}


def test_file_that_never_expires_is_not_tagged(aws_env, s3):
    f = direct_upload(purpose="assistants", filename="doc.pdf", data=b"%PDF")
    assert f["expires_at"] is None
    assert tags(s3, f"files/acme/{f['id']}") == {}


def test_uploads_api_file_is_tagged_from_its_expires_after(aws_env, s3):
    f = uploads_api_upload(JSONL, expires_after={"anchor": "created_at", "seconds": 86400 + 1})
    assert tags(s3, f"files/acme/{f['id']}") == {"retention-days": "2"}
    f = uploads_api_upload(JSONL)
    assert tags(s3, f"files/acme/{f['id']}") == {"retention-days": "30"}


def test_multipart_writer_tags_the_object_it_creates(aws_env, s3):
    # More than one part: the tag goes on CreateMultipartUpload (the single-PutObject path is above).
    writer = FileStore("unused", BUCKET).writer("files/acme/file-big", part_bytes=5 * MIB,
                                                tagging=retention_tag(0, 7 * 86400))
    for _ in range(4):
        writer.write(b"x" * (2 * MIB))
    assert writer.close() == 8 * MIB
    assert s3.head_object(Bucket=BUCKET, Key="files/acme/file-big")["ETag"].endswith('-2"')
    assert tags(s3, "files/acme/file-big") == {"retention-days": "7"}
