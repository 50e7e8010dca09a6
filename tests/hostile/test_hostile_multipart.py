"""Hostile multipart/form-data bodies against handlers/multipart.py (POST /v1/files and
POST /v1/uploads/{id}/parts), and hostile filenames through POST /v1/files under moto.

Properties: any well-formed body comes back part for part, byte for byte (last duplicate wins), in any
field order and whatever the content holds (CRLF, boundary look-alikes, NULs); a truncated or
garbled body yields a subset of whole parts or a 400, never partial data and never a crash; a
filename never reaches the S3 key and comes back as a plain name.
"""
from __future__ import annotations

import re
import string

import boto3
import pytest
from hostile_helpers import BUCKET, GOOD_LINE, assert_contract, budget, call, multipart, snapshot
from hypothesis import assume, given
from hypothesis import strategies as st

from batchgate import errors
from batchgate.handlers.multipart import parse_form

NAMES = ["file", "purpose", "data", "expires_after[anchor]", "expires_after[seconds]", "x", "fil\u00e9"]
# RFC 2046 bchars (without the space, which may not end a boundary)
BCHARS = string.ascii_letters + string.digits + "'()+_,-./:=?"


@st.composite
def content(draw, boundary: str) -> bytes:
    """Binary content with the usual traps: CRLFs, dashes and near-misses of the delimiter."""
    b = boundary.encode()
    traps = [b"\r\n", b"\n", b"\r", b"--", b"--" + b, b"\r\n--" + b[:-1], b"\n--" + b, b"\r\n-" + b,
             b"--" + b + b"--", b"\x00", b"\xff\xfe", b"\r\n\r\n", b'Content-Disposition: form-data; name="x"']
    pieces = draw(st.lists(st.binary(max_size=12) | st.sampled_from(traps), max_size=8))
    return b"".join(pieces)


@st.composite
def form_body(draw):
    boundary = draw(st.text(st.sampled_from(BCHARS), min_size=1, max_size=70))
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES))
        filename = draw(st.none() | st.sampled_from(["a.jsonl", "../../etc/passwd", "/abs/x.jsonl", "r\u00e9.jsonl",
                                                     "with space.jsonl", "x;y.jsonl", "."]))
        data = draw(content(boundary))
        # A sender picks a boundary that does not occur in its content (RFC 2046 §5.1.1).
        assume(b"\r\n--" + boundary.encode() not in b"\r\n" + data + b"\r\n")
        parts.append((name, filename, data))
    body, ctype = multipart(parts, boundary=boundary)
    return parts, body, ctype


def parsed(body: bytes, ctype: str) -> dict | None:
    try:
        form = parse_form(body, ctype)
    except errors.InvalidRequest as exc:
        assert exc.status == 400 and exc.code in ("invalid_multipart", "invalid_content_type")
        return None
    return {name: (p.data, p.filename) for name, p in form.parts.items()}


@budget(150)
@given(form_body())
def test_well_formed_bodies_round_trip(case):
    parts, body, ctype = case
    assert parsed(body, ctype) == last_wins(parts)


def last_wins(parts: list) -> dict:
    return {name: (data, filename) for name, filename, data in parts}


@budget(100)
@given(form_body(), st.data())
def test_truncated_bodies_give_whole_parts_or_400(case, data):
    parts, body, ctype = case
    cut = data.draw(st.integers(0, max(len(body) - 1, 0)))
    got = parsed(body[:cut], ctype)
    if got is not None:
        # the whole parts sent before the cut, never an incomplete one
        assert any(got == last_wins(parts[:k]) for k in range(len(parts) + 1)), got


@budget(100)
@given(st.binary(max_size=400), st.sampled_from(["multipart/form-data; boundary=BND",
                                                 "multipart/form-data; boundary=\"a b\"",
                                                 "multipart/form-data; boundary=-"]))
def test_garbage_bodies_give_a_form_or_400(body, ctype):
    disposition = b"--BND\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
    for candidate in (body, b"--BND\r\n" + body, disposition + body):
        parsed(candidate, ctype)  # raises anything but InvalidRequest -> the test fails


@pytest.mark.parametrize("ctype", [None, "", "application/json", "text/plain", "multipart/mixed; boundary=BND",
                                   "multipart/form-data", "multipart/form-data; boundary=",
                                   "multipart/form-data; boundary=OTHER",
                                   pytest.param("multipart/form-data; boundary=" + "x" * 300,
                                                id="boundary-of-300-chars")])
def test_wrong_content_types_are_400(ctype):
    body, _ = multipart([("purpose", None, b"batch"), ("file", "a.jsonl", b"x")], boundary="BND")
    assert parsed(body, ctype) is None


@pytest.mark.parametrize("ctype", ["Multipart/Form-Data; Boundary=BND", 'multipart/form-data; boundary="BND"',
                                   "multipart/form-data;boundary=BND; charset=utf-8"])
def test_content_type_spelling_variants_are_accepted(ctype):
    body, _ = multipart([("purpose", None, b"batch"), ("file", "a.jsonl", b"x")], boundary="BND")
    assert parsed(body, ctype) == {"purpose": (b"batch", None), "file": (b"x", "a.jsonl")}


# -- filenames through POST /v1/files (moto) --------------------------------------------------------
KEY_SHAPE = re.compile(r"^files/tenant-a/file-[0-9A-Za-z]{24}$")


def _post_file(filename: str | None, data: bytes = GOOD_LINE, purpose: bytes = b"batch", raw_disposition=None):
    if raw_disposition is None:
        body, ctype = multipart([("purpose", None, purpose), ("file", filename, data)], boundary="BND")
    else:
        body = (b'--BND\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose + b"\r\n"
                b"--BND\r\nContent-Disposition: " + raw_disposition + b"\r\n\r\n" + data + b"\r\n--BND--\r\n")
        ctype = "multipart/form-data; boundary=BND"
    return call("POST", "/v1/files", tenant="tenant-a", body=body, headers={"Content-Type": ctype})


def _assert_stored_safely(answer, before_keys: set[str]):
    assert_contract(answer)
    new_keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])} - before_keys
    if answer.status != 200:
        assert new_keys == set()
        return None
    file_id = answer.json()["id"]
    assert new_keys == {f"files/tenant-a/{file_id}"} and all(KEY_SHAPE.match(k) for k in new_keys)
    return answer.json()["filename"]


def _keys() -> set[str]:
    return {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])}


SAFE = [("../../etc/passwd.jsonl", "passwd.jsonl"), ("/abs/path/in.jsonl", "in.jsonl"),
        ("C:\\Users\\x\\in.jsonl", "in.jsonl"), ("in.jsonl", "in.jsonl"), ("", "upload"), (None, "upload"),
        ("dir/", "upload"), ("r\u00e9sum\u00e9 \u2028 \U0001f600.jsonl", "r\u00e9sum\u00e9 \u2028 \U0001f600.jsonl")]


@pytest.mark.parametrize("filename, shown", SAFE)
def test_path_like_filenames_never_reach_the_key(world, filename, shown):
    before = _keys()
    assert _assert_stored_safely(_post_file(filename), before) == shown


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not re.search(r"[/\\\x00-\x1f\x7f]", name)


@pytest.mark.parametrize("filename", [
    "..\\..\\evil.jsonl",
    "a\x00b.jsonl",
    "a/..",
    "x\r\nContent-Type: text/evil",  # header injection: the CRLF ends the header, nothing leaks
    'q"uote.jsonl', "%2e%2e%2f.jsonl", "a" * 1000 + ".jsonl",
])
def test_hostile_filenames_come_back_as_plain_names(world, filename):
    before = _keys()
    shown = _assert_stored_safely(_post_file(filename), before)
    assert shown is None or _safe_name(shown), shown


def test_rfc5987_filename_star_and_header_injection_in_disposition(world):
    before = _keys()
    answer = _post_file(None, raw_disposition=b'form-data; name="file"; filename*=UTF-8\'\'..%2F..%2Fx.jsonl')
    assert _assert_stored_safely(answer, before) in (None, "upload", "x.jsonl")
    before = _keys()
    answer = _post_file(None, raw_disposition=b'form-data; name="file"; filename="a.jsonl"\r\nX-Amz-Meta-Evil: 1')
    assert _assert_stored_safely(answer, before) == "a.jsonl"
    key = f"files/tenant-a/{answer.json()['id']}"
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["Metadata"] == {}


def test_files_route_long_boundary_is_400(world):
    body, ctype = multipart([("purpose", None, b"batch"), ("file", "a.jsonl", GOOD_LINE)], boundary="b" * 257)
    answer = call("POST", "/v1/files", tenant="tenant-a", body=body, headers={"Content-Type": ctype})
    assert_contract(answer)


@budget(25)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\r\n\"\\\x00"), max_size=40))
def test_any_filename_never_reaches_the_key(world, filename):
    before, state = _keys(), snapshot()
    answer = _post_file(filename, purpose=b"user_data")
    shown = _assert_stored_safely(answer, before)
    if shown is None:
        assert snapshot() == state
    else:
        assert "/" not in shown


@budget(30)
@given(form_body(), st.data())
def test_files_route_answers_any_body_with_an_object_or_an_envelope(world, case, data):
    parts, body, ctype = case
    if data.draw(st.booleans()):
        body = body[:data.draw(st.integers(0, len(body)))]
    state = snapshot()
    answer = call("POST", "/v1/files", tenant="tenant-a", body=body, headers={"Content-Type": ctype})
    assert_contract(answer)
    if answer.status != 200:
        assert snapshot() == state
