"""Hostile requests against every files, uploads and batches route (the real handlers, API Gateway
proxy events, moto).

Properties: every answer is a valid 2xx object or OpenAI's error envelope with all four keys and a
4xx status (never 5xx); a rejected request leaves everything stored exactly as it was; tenant B gets
404 for every one of tenant A's objects, on every route, and never sees or counts them in a list.
"""
from __future__ import annotations

import json

import pytest
from hostile_helpers import GOOD_LINE, assert_contract, budget, call, call_json, multipart, snapshot, upload_file
from hypothesis import given
from hypothesis import strategies as st

A, B = "tenant-a", "tenant-b"
CHAT = "/v1/chat/completions"
UNKNOWN_PART = "part_" + "0" * 32


@pytest.fixture(scope="module")
def seeded(world):
    """Tenant A's objects: two files, a pending upload with one part, a completed upload, a batch."""
    batch_file = upload_file(A)
    other_file = upload_file(A, b"hello", filename="notes.txt", purpose="user_data")
    pending = call_json("POST", "/v1/uploads", {"filename": "big.jsonl", "purpose": "batch",
                                                "bytes": len(GOOD_LINE), "mime_type": "application/jsonl"},
                        tenant=A).json()
    body, ctype = multipart([("data", "blob", GOOD_LINE)])
    part = call("POST", f"/v1/uploads/{pending['id']}/parts", tenant=A, body=body,
                headers={"Content-Type": ctype}).json()
    done = call_json("POST", "/v1/uploads", {"filename": "done.jsonl", "purpose": "batch",
                                             "bytes": len(GOOD_LINE), "mime_type": "application/jsonl"},
                     tenant=A).json()
    done_part = call("POST", f"/v1/uploads/{done['id']}/parts", tenant=A, body=body,
                     headers={"Content-Type": ctype}).json()
    completed = call_json("POST", f"/v1/uploads/{done['id']}/complete", {"part_ids": [done_part["id"]]},
                          tenant=A)
    assert completed.status == 200, completed
    batch = call_json("POST", "/v1/batches", {"input_file_id": batch_file["id"], "endpoint": CHAT,
                                              "completion_window": "24h"}, tenant=A)
    assert batch.status == 200, batch
    return {"file": batch_file["id"], "other_file": other_file["id"], "upload": pending["id"],
            "part": part["id"], "done_upload": done["id"], "done_file": completed.json()["file"]["id"],
            "batch": batch.json()["id"]}


def _rejected_changes_nothing(send):
    """Send one request; if it is rejected, nothing stored may have changed."""
    before = snapshot()
    answer = send()
    assert_contract(answer)
    if answer.status >= 400:
        assert snapshot() == before, answer
    return answer


# -- hostile JSON bodies ---------------------------------------------------------------------------
HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from(["", "x" * 100_000, "\u0000", "\ud83d\ude00", "\u2028", "batch",
                                           "24h", CHAT, "created_at", "file-" + "a" * 24, UNKNOWN_PART]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(0, 3000).map(lambda n: [[]] if n == 0 else json.loads("[" * min(n, 900) + "]" * min(n, 900))),
)
RAW_BODIES = st.one_of(
    st.binary(max_size=200), st.sampled_from([b"", b"null", b"[]", b"[{}]", b'"x"', b"1", b"true", b"{",
                                              b"NaN", b'{"a":NaN}', b"{}" * 2, b"\xef\xbb\xbf{}",
                                              b"[" * 5000 + b"]" * 5000, b'{"x":"\xff"}', b'{"\\ud800":1}']))


def _route_bases(ids: dict) -> dict[str, dict]:
    return {
        "/v1/uploads": {"filename": "x.jsonl", "purpose": "batch", "bytes": 10, "mime_type": "application/jsonl",
                        "expires_after": {"anchor": "created_at", "seconds": 3600}},
        f"/v1/uploads/{ids['upload']}/complete": {"part_ids": [UNKNOWN_PART], "md5": "0" * 32},
        "/v1/batches": {"input_file_id": ids["file"], "endpoint": CHAT, "completion_window": "24h",
                        "metadata": {"k": "v"}, "output_expires_after": {"anchor": "created_at", "seconds": 3600}},
    }


@st.composite
def mutated(draw, base: dict):
    """The base body with one field (maybe nested) replaced, removed, or one unknown field added."""
    body = json.loads(json.dumps(base))
    paths = [(k,) for k in body] + [(k, sub) for k, v in body.items() if isinstance(v, dict) for sub in v]
    path = draw(st.sampled_from(paths))
    target = body
    for key in path[:-1]:
        target = target[key]
    action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
    if action == "replace":
        target[path[-1]] = draw(HOSTILE_VALUES)
    elif action == "remove":
        del target[path[-1]]
    else:
        target[draw(st.text(max_size=8))] = draw(HOSTILE_VALUES)
    return json.dumps(body)


@budget(90)
@given(st.data())
def test_json_routes_answer_any_body_with_an_object_or_an_envelope(seeded, data):
    bases = _route_bases(seeded)
    path = data.draw(st.sampled_from(sorted(bases)))
    if data.draw(st.integers(0, 3)) == 0:
        body = data.draw(RAW_BODIES)
    else:
        body = data.draw(mutated(bases[path]))
    ctype = data.draw(st.sampled_from(["application/json", "application/json", "text/plain", None,
                                       "application/octet-stream", "multipart/form-data; boundary=x"]))
    headers = {"Content-Type": ctype} if ctype else {}
    if path == "/v1/batches" and data.draw(st.booleans()):
        headers["Idempotency-Key"] = data.draw(st.sampled_from(["k", "x" * 5000, "\u00e9", ""]))
    _rejected_changes_nothing(lambda: call("POST", path, tenant=A, body=body, headers=headers))


@pytest.mark.parametrize("path", ["/v1/uploads", "/v1/batches"])
@pytest.mark.parametrize("body", ["[]", '"str"', "1", "null", "{\"a\":", "x" * 1000, "[" * 2000 + "]" * 2000])
def test_non_object_json_bodies_are_400(seeded, path, body):
    answer = _rejected_changes_nothing(lambda: call_json("POST", path, raw=body, tenant=A))
    assert answer.status == 400


@pytest.mark.parametrize("path", ["/v1/uploads", "/v1/batches"])
@pytest.mark.parametrize("field", ["filename", "purpose", "bytes", "mime_type", "input_file_id", "endpoint",
                                   "completion_window", "metadata", "expires_after", "output_expires_after"])
@pytest.mark.parametrize("value", [None, True, 1, 1.5, "s", [], {}, 10 ** 30])
def test_wrong_types_for_every_field_are_400_or_ok(seeded, path, field, value):
    body = {**_route_bases(seeded)[path], field: value}
    answer = _rejected_changes_nothing(lambda: call_json("POST", path, body, tenant=A))
    assert answer.status in (200, 400, 404), answer  # 404: a string that is no file id of A's


# -- oversized payloads ---------------------------------------------------------------------------------
def test_oversized_direct_upload_is_413_and_stores_nothing(seeded):
    body, ctype = multipart([("purpose", None, b"batch"), ("file", "big.jsonl", GOOD_LINE * 1000)])
    answer = _rejected_changes_nothing(lambda: call("POST", "/v1/files", tenant=A, body=body,
                                                    headers={"Content-Type": ctype}))
    assert answer.status == 413 and "Uploads API" in answer.json()["error"]["message"]


def test_oversized_part_is_413_and_stores_nothing(seeded):
    body, ctype = multipart([("data", "blob", b"x" * (65 * 1024))])
    answer = _rejected_changes_nothing(lambda: call("POST", f"/v1/uploads/{seeded['upload']}/parts", tenant=A,
                                                    body=body, headers={"Content-Type": ctype}))
    assert answer.status == 413


@pytest.mark.parametrize("payload", [
    {"filename": "x.jsonl", "purpose": "batch", "bytes": 10 ** 12, "mime_type": "application/jsonl"},
    {"filename": "x" * 5000 + ".jsonl", "purpose": "batch", "bytes": 1, "mime_type": "application/jsonl"},
    {"filename": "x.jsonl", "purpose": "batch", "bytes": -1, "mime_type": "application/jsonl"},
    {"filename": "x.jsonl", "purpose": "batch", "bytes": 1, "mime_type": "a" * 1_000_000},   # issue 9, item 6
    {"filename": "x.jsonl", "purpose": "batch", "bytes": 1, "mime_type": "application/" + "x" * 250},
])
def test_oversized_upload_declarations_are_400(seeded, payload):
    assert _rejected_changes_nothing(lambda: call_json("POST", "/v1/uploads", payload, tenant=A)).status == 400


def test_oversized_completion_fields_are_400(seeded):
    path = f"/v1/uploads/{seeded['upload']}/complete"
    for body in ({"part_ids": [seeded["part"]], "md5": "f" * 100_000},
                 {"part_ids": [seeded["part"]] + [f"part_{i}" for i in range(20_000)]}):
        assert _rejected_changes_nothing(lambda: call_json("POST", path, body, tenant=A)).status == 400


@pytest.mark.parametrize("raw, stored", [
    ("../../x.jsonl", "x.jsonl"), ("a\\b\\c.jsonl", "c.jsonl"), ("in\x00put.jsonl", "input.jsonl"),
    ("in\r\nSet-Cookie: x.jsonl", "inSet-Cookie: x.jsonl"), ("..", "upload"),
])
def test_upload_filenames_follow_the_files_rule(seeded, raw, stored):
    # One rule for POST /v1/uploads and POST /v1/files (issue 9, item 6): the same name, cleaned alike.
    upload = call_json("POST", "/v1/uploads", {"filename": raw, "purpose": "batch", "bytes": len(GOOD_LINE),
                                               "mime_type": "application/jsonl"}, tenant=A)
    assert upload.status == 200 and upload.json()["filename"] == stored
    if "\r" not in raw:  # a CR/LF cannot travel inside a multipart header
        assert upload_file(A, filename=raw)["filename"] == stored


def test_a_filename_over_1024_characters_is_400_on_both_routes(seeded):
    body, ctype = multipart([("purpose", None, b"batch"), ("file", "x" * 2000 + ".jsonl", GOOD_LINE)])
    direct = _rejected_changes_nothing(lambda: call("POST", "/v1/files", tenant=A, body=body,
                                                    headers={"Content-Type": ctype}))
    assert direct.status == 400 and direct.json()["error"]["param"] == "file"


def test_oversized_metadata_is_400(seeded):
    body = {**_route_bases(seeded)["/v1/batches"], "metadata": {"k": "v" * 1_000_000}}
    assert _rejected_changes_nothing(lambda: call_json("POST", "/v1/batches", body, tenant=A)).status == 400


def test_parts_in_wrong_form_are_400(seeded):
    path = f"/v1/uploads/{seeded['upload']}/parts"
    for body, ctype in [(b"raw bytes", "application/octet-stream"), (b'{"data":"x"}', "application/json"),
                        multipart([("file", "blob", b"x")]), multipart([("data", None, b"")])[:1] + (None,)]:
        answer = _rejected_changes_nothing(
            lambda: call("POST", path, tenant=A, body=body, headers={"Content-Type": ctype} if ctype else {}))
        assert answer.status == 400, answer


# -- query strings -------------------------------------------------------------------------------------------
QUERY_VALUES = st.sampled_from(["-1", "0", "1", "100", "101", "10000", "10001", str(10 ** 30), "abc", "", " ",
                                "1.5", "1e3", "0x10", "\u0661", "NaN", "9" * 5000, "asc", "desc", "ASC",
                                "file-" + "a" * 24, "batch_" + "0" * 32, "garbage", "\u0000", "%00", "../x"])


@budget(60)
@given(st.sampled_from(["/v1/files", "/v1/batches"]),
       st.dictionaries(st.sampled_from(["limit", "after", "order", "purpose", "other"]), QUERY_VALUES, max_size=4))
def test_list_queries_are_200_or_invalid_value(seeded, path, query):
    answer = call("GET", path, tenant=A, query=query)
    assert_contract(answer)
    if answer.status == 200:
        page = answer.json()
        assert page["object"] == "list" and isinstance(page["data"], list) and isinstance(page["has_more"], bool)
    else:
        err = answer.json()["error"]
        assert answer.status == 400 and err["code"] == "invalid_value" and err["param"] in query, answer


# -- path ids ------------------------------------------------------------------------------------------------
ID_LIKE = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=60),
    st.sampled_from(["file-" + "a" * 23, "file-" + "a" * 25, "file-" + "!" * 24, "FILE-" + "a" * 24,
                     "batch_" + "G" * 32, "batch_" + "A" * 32, "upload_" + "0" * 31, "upload_" + "0" * 32,
                     "file-" + "a" * 24 + "\n", "batch_" + "0" * 32 + "\n", "..", ".", "%2e%2e", "x" * 5000,
                     "file-aaaaaaaaaaaaaaaaaaaaaaaa#FILE#x", "' OR 1=1 --"]))
ID_ROUTES = [("GET", "/v1/files/{}"), ("DELETE", "/v1/files/{}"), ("GET", "/v1/files/{}/content"),
             ("POST", "/v1/uploads/{}/parts"), ("POST", "/v1/uploads/{}/complete"), ("POST", "/v1/uploads/{}/cancel"),
             ("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel")]


@budget(80)
@given(st.sampled_from(ID_ROUTES), ID_LIKE)
def test_ids_of_the_wrong_shape_are_404(seeded, route, raw_id):
    method, template = route
    path = template.format(raw_id)
    if path.endswith("/parts"):
        body, ctype = multipart([("data", "blob", b"x")])
        send = lambda: call(method, path, tenant=A, body=body, headers={"Content-Type": ctype})
    else:
        send = lambda: call_json(method, path, {"part_ids": [UNKNOWN_PART]} if "complete" in path else None,
                                 tenant=A)
    answer = _rejected_changes_nothing(send)
    assert answer.status in (400, 404), answer


# -- another tenant's objects ----------------------------------------------------------------------------------
def _cross_tenant_requests(ids: dict):
    part_body, part_ctype = multipart([("data", "blob", GOOD_LINE)])
    return [
        ("GET", f"/v1/files/{ids['file']}", None), ("GET", f"/v1/files/{ids['other_file']}/content", None),
        ("GET", f"/v1/files/{ids['done_file']}", None), ("GET", f"/v1/files/{ids['file']}/content", None),
        ("DELETE", f"/v1/files/{ids['file']}", None), ("DELETE", f"/v1/files/{ids['done_file']}", None),
        ("POST", f"/v1/uploads/{ids['upload']}/parts", (part_body, part_ctype)),
        ("POST", f"/v1/uploads/{ids['upload']}/complete", {"part_ids": [ids["part"]]}),
        ("POST", f"/v1/uploads/{ids['upload']}/cancel", None),
        ("POST", f"/v1/uploads/{ids['done_upload']}/cancel", None),
        ("GET", f"/v1/batches/{ids['batch']}", None), ("POST", f"/v1/batches/{ids['batch']}/cancel", None),
        ("POST", "/v1/batches", {"input_file_id": ids["file"], "endpoint": CHAT, "completion_window": "24h"}),
        ("POST", "/v1/batches", {"input_file_id": ids["done_file"], "endpoint": CHAT, "completion_window": "24h"}),
    ]


def test_another_tenants_objects_are_404_everywhere(seeded):
    for method, path, payload in _cross_tenant_requests(seeded):
        if isinstance(payload, tuple):
            send = lambda: call(method, path, tenant=B, body=payload[0],
                                headers={"Content-Type": payload[1]})
        else:
            send = lambda: call_json(method, path, payload, tenant=B)
        answer = _rejected_changes_nothing(send)
        assert answer.status == 404, (method, path, answer)
        sent = path + (json.dumps(payload) if isinstance(payload, dict) else "")
        leaked = [v for v in seeded.values() if v not in sent and v in answer.content.decode()]
        assert not leaked, (method, path, answer)


def test_another_tenants_parts_cannot_complete_my_upload(seeded):
    mine = call_json("POST", "/v1/uploads", {"filename": "b.jsonl", "purpose": "batch", "bytes": len(GOOD_LINE),
                                             "mime_type": "application/jsonl"}, tenant=B).json()
    answer = _rejected_changes_nothing(lambda: call_json(
        "POST", f"/v1/uploads/{mine['id']}/complete", {"part_ids": [seeded["part"]]}, tenant=B))
    assert answer.status == 400 and answer.json()["error"]["param"] == "part_ids"


@pytest.mark.parametrize("path, query", [
    ("/v1/files", {}), ("/v1/files", {"purpose": "batch"}), ("/v1/files", {"order": "asc", "limit": "1"}),
    ("/v1/files", {"after": "{file}"}), ("/v1/batches", {}), ("/v1/batches", {"after": "{batch}"}),
])
def test_lists_never_show_another_tenants_objects(seeded, path, query):
    query = {k: v.format(**seeded) for k, v in query.items()}
    upload_file(B)  # B has something of its own to list
    answer = call("GET", path, tenant=B, query=query or None)
    assert_contract(answer)
    assert answer.status == 200
    text = answer.content.decode()
    assert not any(v in text for v in seeded.values()), text
    if path == "/v1/batches":
        data = answer.json()["data"]
        assert data == [] or all(b["input_file_id"] not in seeded.values() for b in data)


def test_tenant_a_still_has_everything(seeded):
    """After every hostile request above (the module's tests run in file order), A's objects are intact."""
    assert call("GET", f"/v1/files/{seeded['file']}/content", tenant=A).content == GOOD_LINE
    assert call("GET", f"/v1/files/{seeded['done_file']}/content", tenant=A).content == GOOD_LINE
    assert call("GET", f"/v1/batches/{seeded['batch']}", tenant=A).json()["status"] == "validating"
    assert call("GET", f"/v1/files/{seeded['other_file']}", tenant=A).status == 200


def test_an_empty_metadata_key_is_refused_or_readable(world):
    tenant = "tenant-meta"
    file_id = upload_file(tenant)["id"]
    created = call_json("POST", "/v1/batches", {"input_file_id": file_id, "endpoint": CHAT,
                                                "completion_window": "24h", "metadata": {"": "v"}}, tenant=tenant)
    assert_contract(created)
    assert_contract(call("GET", "/v1/batches", tenant=tenant))
    if created.status == 200:
        assert_contract(call("GET", f"/v1/batches/{created.json()['id']}", tenant=tenant))
