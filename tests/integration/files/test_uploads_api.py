"""Uploads API handler against moto: create, parts, complete (regrouped, validated), cancel, expiry."""
from __future__ import annotations

import hashlib
import random

import pytest
from files_helpers import BUCKET, call, call_json, multipart

MIB = 1024 * 1024


def jsonl_bytes(n: int, seed: int = 1) -> bytes:
    """n bytes of valid JSONL (lines of varying length, some multi-byte UTF-8)."""
    rnd = random.Random(seed)
    out = bytearray()
    i = 0
    while len(out) < n:
        pad = "é" * rnd.randint(0, 40) + "x" * rnd.randint(0, 400)
        body = f'{{"model":"m","p":"{pad}"}}'
        out += f'{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{body}}}\n'.encode()
        i += 1
    head = bytes(out[:n - 1]).decode("utf-8", "ignore").encode()  # never cut a character in two
    return head + b"x" * (n - 1 - len(head)) + b"\n"


def test_sdk_upload_file_chunked_30mb(sdk, s3, tmp_path):
    data = jsonl_bytes(30 * MIB + 12345)
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    upload = sdk().uploads.upload_file_chunked(file=path, mime_type="application/jsonl", purpose="batch",
                                               part_size=4 * MIB)
    assert upload.status == "completed" and upload.bytes == len(data) and upload.filename == "big.jsonl"
    f = upload.file
    assert f.object == "file" and f.purpose == "batch" and f.bytes == len(data)
    assert f.expires_at == f.created_at + 30 * 86400
    stored = s3.get_object(Bucket=BUCKET, Key=f"files/acme/{f.id}")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    # 4 MiB upload parts were regrouped into 8 MiB S3 parts (S3 refuses parts < 5 MiB but the last)
    assert s3.head_object(Bucket=BUCKET, Key=f"files/acme/{f.id}")["ETag"].endswith("-4\"")
    # part objects are gone once assembled
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/").get("KeyCount", 0) == 0


def create(tenant="acme", **kw):
    payload = {"filename": "in.jsonl", "purpose": "batch", "bytes": 0, "mime_type": "application/jsonl", **kw}
    return call_json("POST", "/v1/uploads", payload, tenant=tenant)


def add_part(upload_id, data: bytes, tenant="acme", field="data"):
    body, ctype = multipart({}, {field: ("blob", data)})
    return call("POST", f"/v1/uploads/{upload_id}/parts", tenant=tenant, body=body, headers={"Content-Type": ctype})


def complete(upload_id, part_ids, tenant="acme", **kw):
    return call_json("POST", f"/v1/uploads/{upload_id}/complete", {"part_ids": part_ids, **kw}, tenant=tenant)


def cancel(upload_id, tenant="acme"):
    return call("POST", f"/v1/uploads/{upload_id}/cancel", tenant=tenant)


def stored_files(s3, table):
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="files/").get("Contents", [])]
    records = [i for i in table.scan()["Items"] if i["sk"].startswith("FILE#")]
    return keys, records


def test_complete_assembles_parts_in_the_given_order(aws_env, s3, table):
    chunks = [b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n']
    up = create(bytes=sum(map(len, chunks))).json()
    assert up["status"] == "pending" and up["expires_at"] == up["created_at"] + 3600 and up["file"] is None
    parts = [add_part(up["id"], c).json() for c in chunks]
    assert all(p["object"] == "upload.part" and p["upload_id"] == up["id"] for p in parts)
    order = [parts[2]["id"], parts[0]["id"], parts[1]["id"]]
    done = complete(up["id"], order)
    assert done.status == 200, done.json()
    body = done.json()
    assert body["status"] == "completed" and body["file"]["bytes"] == up["bytes"]
    got = s3.get_object(Bucket=BUCKET, Key=f"files/acme/{body['file']['id']}")["Body"].read()
    assert got == chunks[2] + chunks[0] + chunks[1]
    # the file is a normal file of the Files API
    assert call("GET", f"/v1/files/{body['file']['id']}").json() == body["file"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/").get("KeyCount", 0) == 0
    assert not [i for i in table.scan()["Items"] if i["pk"].startswith("U#")]


def test_utf8_character_split_across_parts_is_valid(aws_env):
    text = '{"x":"é"}\n'.encode()
    cut = text.index(b"\xc3") + 1
    up = create(bytes=len(text)).json()
    ids = [add_part(up["id"], text[:cut]).json()["id"], add_part(up["id"], text[cut:]).json()["id"]]
    assert complete(up["id"], ids).status == 200


@pytest.mark.parametrize("payload, param, code", [
    ({"part_ids": "p"}, "part_ids", "invalid_type"),
    ({}, "part_ids", "missing_required_parameter"),
    ({"part_ids": [1]}, "part_ids.0", "invalid_type"),
])
def test_complete_body_validation(aws_env, payload, param, code):
    up = create(bytes=1).json()
    ans = call_json("POST", f"/v1/uploads/{up['id']}/complete", payload)
    assert ans.status == 400 and ans.error["param"] == param and ans.error["code"] == code


def test_bytes_mismatch_stores_nothing_and_keeps_upload_usable(aws_env, s3, table):
    up = create(bytes=10).json()
    p = add_part(up["id"], b'{"a":1}\n').json()["id"]
    ans = complete(up["id"], [p])
    assert ans.status == 400 and ans.error["param"] == "part_ids" and "10" in ans.error["message"]
    assert stored_files(s3, table) == ([], [])
    p2 = add_part(up["id"], b"{}").json()["id"]
    assert complete(up["id"], [p, p2]).json()["status"] == "completed"


def test_unknown_or_foreign_or_duplicate_part_ids(aws_env, s3, table):
    a = create(bytes=4).json()
    b = create(bytes=4).json()
    pa = add_part(a["id"], b"{}\n\n").json()["id"]
    pb = add_part(b["id"], b"{}\n\n").json()["id"]
    for ids in ([pb], ["part_" + "0" * 32], [pa, pa]):
        ans = complete(a["id"], ids)
        assert ans.status == 400 and ans.error["param"] == "part_ids", ans.json()
    assert stored_files(s3, table) == ([], [])


def test_invalid_utf8_aborts_the_multipart_upload(aws_env, s3, table):
    good = jsonl_bytes(4 * MIB)
    good.decode("utf-8")
    bad = b'{"x":"\xff"}\n'
    up = create(bytes=3 * len(good) + len(bad)).json()
    ids = [add_part(up["id"], good).json()["id"] for _ in range(3)] + [add_part(up["id"], bad).json()["id"]]
    ans = complete(up["id"], ids)
    assert ans.status == 400 and ans.error["param"] == "file" and "UTF-8" in ans.error["message"]
    assert "line" in ans.error["message"]
    assert stored_files(s3, table) == ([], [])
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_md5_is_checked(aws_env, s3, table):
    data = b'{"a":1}\n'
    up = create(bytes=len(data)).json()
    p = add_part(up["id"], data).json()["id"]
    assert complete(up["id"], [p], md5="0" * 32).error["param"] == "md5"
    assert stored_files(s3, table) == ([], [])
    assert complete(up["id"], [p], md5=hashlib.md5(data).hexdigest()).json()["status"] == "completed"


def test_empty_upload_gives_empty_file(aws_env, s3):
    up = create(bytes=0, purpose="user_data", filename="empty.txt").json()
    f = complete(up["id"], []).json()["file"]
    assert f["bytes"] == 0 and f["expires_at"] is None
    assert s3.get_object(Bucket=BUCKET, Key=f"files/acme/{f['id']}")["Body"].read() == b""


def test_expires_after_applies_to_the_file(aws_env):
    up = create(bytes=2, purpose="user_data", filename="a.txt",
                expires_after={"anchor": "created_at", "seconds": 7200}).json()
    p = add_part(up["id"], b"hi").json()["id"]
    f = complete(up["id"], [p]).json()["file"]
    assert f["expires_at"] == f["created_at"] + 7200 and f["purpose"] == "user_data"


@pytest.mark.parametrize("override, param, code", [
    ({"filename": None}, "filename", "invalid_type"),
    ({"bytes": "10"}, "bytes", "invalid_type"),
    ({"bytes": True}, "bytes", "invalid_type"),
    ({"bytes": -1}, "bytes", "invalid_value"),
    ({"purpose": "batch_output"}, "purpose", "invalid_value"),
    ({"bytes": 200 * MIB + 1}, "bytes", "file_too_large"),
    ({"filename": "in.csv"}, "filename", "invalid_file_format"),
    ({"expires_after": {"anchor": "created_at", "seconds": 60}}, "expires_after.seconds", "invalid_value"),
    ({"expires_after": {"anchor": "now", "seconds": 3600}}, "expires_after.anchor", "invalid_value"),
])
def test_create_validation(aws_env, override, param, code):
    ans = create(**override)
    assert ans.status == 400, ans.json()
    assert (ans.error["param"], ans.error["code"]) == (param, code)


@pytest.mark.parametrize("field", ["filename", "purpose", "bytes", "mime_type"])
def test_create_missing_fields(aws_env, field):
    payload = {"filename": "a.jsonl", "purpose": "batch", "bytes": 1, "mime_type": "application/jsonl"}
    del payload[field]
    ans = call_json("POST", "/v1/uploads", payload)
    assert ans.status == 400 and ans.error == {"message": f"Missing required parameter: '{field}'.",
                                               "type": "invalid_request_error", "param": field,
                                               "code": "missing_required_parameter"}


def test_create_rejects_non_json(aws_env):
    ans = call("POST", "/v1/uploads", body="nope", headers={"Content-Type": "application/json"})
    assert ans.status == 400 and ans.error["code"] == "invalid_json"


def test_part_rules(aws_env, small_limits):
    up = create(bytes=10).json()
    ans = add_part(up["id"], b"x", field="other")
    assert ans.status == 400 and (ans.error["param"], ans.error["code"]) == ("data", "missing_required_parameter")
    ans = add_part(up["id"], b"x" * 2049)
    msg = ans.error["message"]
    assert ans.status == 413 and "at most 2 KiB (2048 bytes)" in msg and "upload_file_chunked" not in msg


def test_other_tenant_and_unknown_ids_are_404(aws_env):
    up = create(bytes=2).json()
    p = add_part(up["id"], b"{}").json()["id"]
    for ans in (add_part(up["id"], b"{}", tenant="other"), complete(up["id"], [p], tenant="other"),
                cancel(up["id"], tenant="other"), cancel("upload_" + "0" * 32), cancel("bogus")):
        assert ans.status == 404 and ans.error["type"] == "invalid_request_error", ans.json()
    assert complete(up["id"], [p]).json()["status"] == "completed"


def test_no_parts_or_complete_after_completion(aws_env):
    up = create(bytes=2).json()
    p = add_part(up["id"], b"{}").json()["id"]
    assert complete(up["id"], [p]).status == 200
    for ans in (add_part(up["id"], b"{}"), complete(up["id"], [p]), cancel(up["id"])):
        assert ans.status == 400 and "'completed'" in ans.error["message"]


def test_cancel_deletes_parts_and_refuses_more(aws_env, s3, table):
    up = create(bytes=2).json()
    p = add_part(up["id"], b"{}").json()["id"]
    ans = cancel(up["id"])
    assert ans.status == 200 and ans.json()["status"] == "cancelled" and ans.json()["file"] is None
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/").get("KeyCount", 0) == 0
    assert not [i for i in table.scan()["Items"] if i["pk"].startswith("U#")]
    for ans in (add_part(up["id"], b"{}"), complete(up["id"], [p]), cancel(up["id"])):
        assert ans.status == 400 and "'cancelled'" in ans.error["message"]


def test_expired_upload_refuses_parts_and_complete(aws_env, table):
    up = create(bytes=2).json()
    p = add_part(up["id"], b"{}").json()["id"]
    table.update_item(Key={"pk": "T#acme", "sk": f"UPLOAD#{up['id']}"},
                      UpdateExpression="SET expires_at = :t", ExpressionAttributeValues={":t": up["created_at"] - 1})
    for ans in (add_part(up["id"], b"{}"), complete(up["id"], [p]), cancel(up["id"])):
        assert ans.status == 400 and "'expired'" in ans.error["message"]


def test_concurrent_complete_is_refused_while_one_runs(aws_env, table):
    up = create(bytes=2).json()
    p = add_part(up["id"], b"{}").json()["id"]
    table.update_item(Key={"pk": "T#acme", "sk": f"UPLOAD#{up['id']}"},
                      UpdateExpression="SET completing_until = :t",
                      ExpressionAttributeValues={":t": up["created_at"] + 900})
    for ans in (complete(up["id"], [p]), cancel(up["id"]), add_part(up["id"], b"{}")):
        assert ans.status == 409 and "being completed" in ans.error["message"]
        assert ans.headers["x-should-retry"] == "false"
    # a crashed complete's lease runs out: the upload can be completed again
    table.update_item(Key={"pk": "T#acme", "sk": f"UPLOAD#{up['id']}"},
                      UpdateExpression="SET completing_until = :t",
                      ExpressionAttributeValues={":t": up["created_at"] - 1})
    assert complete(up["id"], [p]).json()["status"] == "completed"


def test_sdk_default_part_size_too_big_gets_a_413_that_says_what_to_do(small_limits, sdk):
    import openai
    with pytest.raises(openai.APIStatusError) as exc:
        sdk().uploads.upload_file_chunked(file=b"{}\n" * 1000, filename="a.jsonl", bytes=3000,
                                          mime_type="application/jsonl", purpose="batch")
    assert exc.value.status_code == 413 and "part size" in exc.value.message
