"""Files API handler against moto, driven both by raw API Gateway events and by the official SDK."""
from __future__ import annotations

import json
import time

import pytest
from files_helpers import BUCKET, call, multipart

JSONL = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}\n'


def upload(tenant="acme", *, data=JSONL, filename="in.jsonl", purpose="batch", extra=None):
    fields = {"purpose": purpose, **(extra or {})} if purpose is not None else dict(extra or {})
    body, ctype = multipart(fields, {"file": (filename, data)} if data is not None else {})
    return call("POST", "/v1/files", tenant=tenant, body=body, headers={"Content-Type": ctype})


def test_sdk_upload_retrieve_content_delete(sdk, s3):
    client = sdk()
    f = client.files.create(file=("input.jsonl", JSONL), purpose="batch")
    assert f.object == "file" and f.purpose == "batch" and f.status == "processed"
    assert f.bytes == len(JSONL) and f.filename == "input.jsonl" and f.status_details is None
    assert f.expires_at == f.created_at + 30 * 86400
    assert abs(f.created_at - time.time()) < 5
    assert client.files.retrieve(f.id) == f
    assert client.files.content(f.id).read() == JSONL
    assert s3.get_object(Bucket=BUCKET, Key=f"files/acme/{f.id}")["Body"].read() == JSONL
    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (f.id, "file", True)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    with pytest.raises(Exception) as exc:
        client.files.retrieve(f.id)
    assert exc.value.status_code == 404


def stored(s3, table):
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return keys, [i for i in table.scan()["Items"] if i["sk"].startswith("FILE#")]


def test_sdk_expires_after_bracket_form(sdk):
    f = sdk().files.create(file=("notes.txt", b"hello"), purpose="user_data",
                           expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600 and f.purpose == "user_data"


def test_sdk_raw_bytes_get_default_filename_upload(sdk):
    f = sdk().files.create(file=JSONL, purpose="batch")
    assert f.filename == "upload"


def test_expires_after_json_form(aws_env):
    ans = upload(purpose="batch", extra={"expires_after": json.dumps({"anchor": "created_at", "seconds": 7200})})
    body = ans.json()
    assert ans.status == 200 and body["expires_at"] == body["created_at"] + 7200


def test_non_batch_files_never_expire_by_default(aws_env):
    body = upload(purpose="assistants", filename="doc.pdf", data=b"%PDF\xff\xfe").json()
    assert body["expires_at"] is None and body["filename"] == "doc.pdf"


def test_broken_json_lines_are_not_an_upload_error(aws_env):
    assert upload(data=b"{not json\n[1,2]\n").status == 200


@pytest.mark.parametrize("kwargs, param, code, text", [
    ({"data": None}, "file", "missing_required_parameter", "'file'"),
    ({"purpose": None}, "purpose", "missing_required_parameter", "'purpose'"),
    ({"purpose": "batch_output"}, "purpose", "invalid_value", "purpose"),
    ({"data": b'{"a":"\xe9"}\n'}, "file", "invalid_file_format", "UTF-8"),
    ({"filename": "in.csv"}, "file", "invalid_file_format", "Invalid file format for Batch API. Must be .jsonl."),
    ({"filename": "in.json"}, "file", "invalid_file_format", "Must be .jsonl."),
    ({"extra": {"expires_after[anchor]": "created_at", "expires_after[seconds]": "100"}},
     "expires_after.seconds", "invalid_value", "expires_after.seconds"),
    ({"extra": {"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592001"}},
     "expires_after.seconds", "invalid_value", "2592000"),
    ({"extra": {"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"}},
     "expires_after.anchor", "invalid_value", "created_at"),
    ({"extra": {"expires_after[anchor]": "created_at", "expires_after[seconds]": "soon"}},
     "expires_after.seconds", "invalid_type", "an integer"),
    ({"extra": {"expires_after[anchor]": "created_at"}}, "expires_after.seconds", "missing_required_parameter",
     "seconds"),
    ({"extra": {"expires_after": "{oops"}}, "expires_after", "invalid_type", "expires_after"),
])
def test_upload_400s_store_nothing(aws_env, s3, table, kwargs, param, code, text):
    ans = upload(**kwargs)
    assert ans.status == 400, ans.json()
    assert ans.error["param"] == param and ans.error["code"] == code and ans.error["type"] == "invalid_request_error"
    assert text in ans.error["message"]
    assert stored(s3, table) == ([], [])


def test_batch_file_over_200mb_is_refused(aws_env, s3, table, monkeypatch):
    from batchgate.domain import files as domain
    monkeypatch.setattr(domain, "BATCH_MAX_BYTES", 50)
    ans = upload(data=b"x" * 51 + b"\n")
    assert ans.status == 400 and ans.error["param"] == "file" and ans.error["message"].startswith("File is too large.")
    assert stored(s3, table) == ([], [])


def test_not_multipart_is_a_400(aws_env):
    ans = call("POST", "/v1/files", body='{"purpose":"batch"}', headers={"Content-Type": "application/json"})
    assert ans.status == 400 and "multipart/form-data" in ans.error["message"]


def test_too_large_for_lambda_is_413_pointing_to_uploads(small_limits, s3, table):
    ans = upload(data=b"{}\n" * 1000)
    assert ans.status == 413
    msg = ans.error["message"]
    assert "Uploads API" in msg and "POST /v1/uploads" in msg and ans.error["param"] == "file"
    assert "parts of at most 2 KiB (2048 bytes)" in msg and "upload_file_chunked" not in msg
    assert stored(s3, table) == ([], [])


def test_other_tenant_sees_404_everywhere(aws_env, s3):
    fid = upload().json()["id"]
    expected = {"message": f"No such File object: {fid}", "type": "invalid_request_error", "param": "id",
                "code": None}
    for method, path in (("GET", f"/v1/files/{fid}"), ("GET", f"/v1/files/{fid}/content"),
                         ("DELETE", f"/v1/files/{fid}")):
        ans = call(method, path, tenant="intruder")
        assert ans.status == 404 and ans.error == expected
    assert call("GET", "/v1/files", tenant="intruder").json()["data"] == []
    assert call("GET", f"/v1/files/{fid}").status == 200  # untouched
    assert call("GET", "/v1/files/file-nope").error["message"] == "No such File object: file-nope"


def test_expired_files_are_not_found_nor_listed(aws_env):
    from batchgate.adapters.file_store import FileStore
    store = FileStore("bg-state", BUCKET)
    now = int(time.time())
    old = store.register("acme", file_id="file-" + "0" * 23 + "1", filename="o.jsonl", purpose="batch", bytes=1,
                         s3_key="files/acme/x", created_at=now - 100, expires_at=now - 10)
    assert store.get("acme", old.id) is None
    assert call("GET", f"/v1/files/{old.id}").status == 404
    assert call("DELETE", f"/v1/files/{old.id}").status == 404
    live = upload().json()
    assert [f["id"] for f in call("GET", "/v1/files").json()["data"]] == [live["id"]]


def test_content_small_is_inline_binary(aws_env):
    fid = upload().json()["id"]
    ans = call("GET", f"/v1/files/{fid}/content", headers={"Accept": "application/binary"})
    assert ans.status == 200 and ans.content == JSONL
    assert ans.raw["isBase64Encoded"] is True and ans.headers["content-type"] == "application/octet-stream"


def test_content_large_redirects_to_presigned_s3(small_limits, sdk):
    data = b'{"k":"' + b"v" * 1500 + b'"}\n'
    client = sdk()
    f = client.files.create(file=("big.jsonl", data), purpose="batch")
    ans = call("GET", f"/v1/files/{f.id}/content")
    assert ans.status == 302
    location = ans.headers["location"]
    assert f"files/acme/{f.id}" in location and "X-Amz-Expires=300" in location
    # A client that does not follow redirects sees why, in JSON like every other answer (issue 8).
    assert ans.headers["content-type"] == "application/json"
    assert ans.json() == {
        "object": "file.content.redirect", "id": f.id, "bytes": len(data), "url": location,
        "expires_in": 300,
        "message": f"File {f.id} is {len(data)} bytes, more than this server returns inline (1024 bytes). "
                   "Its bytes are at the presigned URL in `url` and the Location header, valid for 300 "
                   "seconds: follow this redirect (curl -L) without sending your API key there."}
    # the SDK follows the redirect (without its Authorization header) and gets the bytes
    assert client.files.content(f.id).read() == data
    # The browser console cannot read a 302 (fetch follows it): `?redirect=json` answers the notice as a 200.
    notice = call("GET", f"/v1/files/{f.id}/content", query={"redirect": "json"})
    assert notice.status == 200 and notice.json()["object"] == "file.content.redirect"
    assert "response-content-disposition=attachment" in notice.json()["url"]  # S3 answers it as a download
    small = upload().json()["id"]  # inline files are unchanged by it
    assert call("GET", f"/v1/files/{small}/content", query={"redirect": "json"}).content == JSONL


def test_delete_twice(aws_env, s3):
    fid = upload().json()["id"]
    assert call("DELETE", f"/v1/files/{fid}").json() == {"id": fid, "object": "file", "deleted": True}
    assert call("DELETE", f"/v1/files/{fid}").status == 404
    assert call("GET", f"/v1/files/{fid}/content").status == 404


def _ids(ans):
    return [f["id"] for f in ans.json()["data"]]


def test_list_order_paging_and_purpose_filter(aws_env):
    made = []
    for i in range(7):
        purpose = "batch" if i % 2 == 0 else "user_data"
        made.append((upload(purpose=purpose, filename=f"f{i}.jsonl").json()["id"], purpose))
        time.sleep(0.002)  # distinct milliseconds -> ids in creation order
    ids_asc = [i for i, _ in made]
    assert ids_asc == sorted(ids_asc)
    page = call("GET", "/v1/files").json()
    assert _ids_from(page) == ids_asc[::-1] and page["has_more"] is False
    assert page["first_id"] == ids_asc[-1] and page["last_id"] == ids_asc[0] and page["object"] == "list"
    assert _ids(call("GET", "/v1/files", query={"order": "asc"})) == ids_asc

    def walk(order, purpose=None):
        seen, after = [], None
        while True:
            q = {"limit": "2", "order": order, **({"after": after} if after else {}),
                 **({"purpose": purpose} if purpose else {})}
            page = call("GET", "/v1/files", query=q).json()
            seen += _ids_from(page)
            if not page["has_more"]:
                return seen
            assert len(page["data"]) == 2
            after = page["last_id"]

    assert walk("asc") == ids_asc
    assert walk("desc") == ids_asc[::-1]
    batch_ids = [i for i, p in made if p == "batch"]
    assert walk("asc", "batch") == batch_ids
    assert walk("desc", "user_data") == [i for i, p in made if p == "user_data"][::-1]
    empty = call("GET", "/v1/files", query={"purpose": "vision"}).json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    # a filter that matches only far apart: limit 1 still pages correctly
    q = {"purpose": "batch", "limit": "1", "order": "asc", "after": batch_ids[0]}
    page = call("GET", "/v1/files", query=q).json()
    assert _ids_from(page) == [batch_ids[1]] and page["has_more"] is True


def test_a_list_page_is_bounded_in_bytes_and_pages_on(aws_env, monkeypatch):
    # Issue 9, item 6: 10,000 files of long names would pass Lambda's 6 MB answer; a page ends at
    # PAGE_MAX_BYTES (4 MB; 5 KB here) with has_more, and `after` walks the rest.
    from batchgate.models import pages
    monkeypatch.setattr(pages, "PAGE_MAX_BYTES", 5_000)
    made = [upload(filename="n" * 1000 + f"{i}.jsonl").json()["id"] for i in range(9)]
    seen, after = [], None
    while True:
        page = call("GET", "/v1/files", query={"order": "asc", **({"after": after} if after else {})}).json()
        assert 1 <= len(page["data"]) <= 4 and len(json.dumps(page["data"])) <= 5_000 + 1_500
        seen += _ids_from(page)
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == sorted(made)


def _ids_from(page):
    return [f["id"] for f in page["data"]]


def test_sdk_list_auto_pagination(sdk):
    client = sdk()
    made = []
    for _ in range(5):
        made.append(client.files.create(file=("a.jsonl", JSONL), purpose="batch").id)
        time.sleep(0.002)
    assert [f.id for f in client.files.list(limit=2)] == made[::-1]
    assert [f.id for f in client.files.list(limit=2, order="asc", purpose="batch")] == made
    assert list(sdk("someone-else").files.list()) == []


@pytest.mark.parametrize("query, param", [
    ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"), ({"limit": "many"}, "limit"),
    ({"order": "up"}, "order"), ({"after": "nope"}, "after"),
])
def test_list_bad_query_values(aws_env, query, param):
    ans = call("GET", "/v1/files", query=query)
    assert ans.status == 400 and ans.error["param"] == param and ans.error["code"] == "invalid_value"


def test_missing_tenant_is_401(aws_env):
    assert call("GET", "/v1/files", tenant=None).status == 401
