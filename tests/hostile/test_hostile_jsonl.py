"""Hostile batch input files against the JSONL validator (domain/validation.py + domain/jsonl.py).

Property: for any file, the validator reports exactly what the oracle (jsonl_oracle.py: strict JSON
plus the batch rules of reference §12) reports, with the same 1-based lines, codes and params, and
cutting the byte stream into blocks anywhere never changes the result.
"""
from __future__ import annotations

import json

import jsonl_oracle
import orjson
import pytest
from hostile_helpers import budget
from hypothesis import example, given
from hypothesis import strategies as st
from jsonl_oracle import expected, strict_json

from batchgate.domain import validation
from batchgate.domain.jsonl import iter_lines
from batchgate.domain.validation import MAX_ERRORS, validate_lines

CHAT = "/v1/chat/completions"
ENDPOINTS = [CHAT, "/v1/embeddings", "/v1/moderations", "/v1/completions", "/v1/responses"]


def run(data: bytes, endpoint: str = CHAT, *, cuts: list[int] | None = None, max_lines: int = 500,
        max_bytes: int = 8 * 1024 * 1024):
    """Validate `data` delivered in blocks cut at `cuts` (byte offsets)."""
    bounds = sorted({0, len(data), *(c for c in (cuts or []) if 0 < c < len(data))})
    blocks = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    return validate_lines(iter_lines(blocks), endpoint, chunk_max_lines=max_lines, chunk_max_bytes=max_bytes)


def triples(result) -> list[tuple]:
    return [(e["code"], e["line"], e["param"]) for e in result.errors]


def line(custom_id="r1", *, url=CHAT, model="m", **body) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    if model is None:
        del body["model"]
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


# -- strategies: JSON text with hostile leaves -------------------------------------------------------
HOSTILE_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 400, "-" + "9" * 400, "1e308", "-0",
    "18446744073709551616", "1.5e-400", "01", "1.", ".5", "+1", "0x10", '"\\ud800"', '"\\udfff"',
    '"x\\udc00y"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\u2028\\u2029"', '"\u2028\u2029"', '"😀"',
    '"tab\there"', '"nul\x00raw"', '"\\x41"', "'single'", "true", "false", "null", "[" * 1025 + "]" * 1025,
    "[" * 1000 + "]" * 1000, '{"a":1,"a":2}', '"\ufeff"', '"\x7f"',
]
plain_text = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["\u2028", "\u2029", "\x00", "😀", "\U0010ffff", "a\u2028b", "\ufeff", "\r", "\\", '"'])


@st.composite
def json_string(draw, values=plain_text) -> str:
    return json.dumps(draw(values), ensure_ascii=draw(st.booleans()))


leaf = (json_string() | st.sampled_from(HOSTILE_TOKENS)
        | st.integers(-(2 ** 70), 2 ** 70).map(str)
        | st.floats(allow_nan=False, allow_infinity=False).map(repr))
VALID_TOKENS = ["1e308", "-0", "18446744073709551616", "1.5e-400", '"\\ud83d\\ude00"', '"\\u0000"',
                '"\u2028\u2029"', '"😀"', "[" * 200 + "]" * 200, '{"a":1,"a":2}', '"\ufeff"', '"\x7f"']
safe_leaf = (json_string() | st.sampled_from(VALID_TOKENS) | st.integers(-(2 ** 70), 2 ** 70).map(str)
             | st.floats(allow_nan=False, allow_infinity=False).map(repr) | st.just("null"))
safe_json_text = st.recursive(
    safe_leaf,
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.lists(st.tuples(json_string(), inner), max_size=3).map(
        lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
    max_leaves=6)
json_text = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.lists(st.tuples(json_string(), inner), max_size=3).map(
        lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
    max_leaves=6)


def field_text(draw, good: str, pool: list[str]) -> str | None:
    """A field's JSON text: mostly `good`, sometimes another value from `pool`, absent (None)."""
    return draw(st.sampled_from([good] * 6 + pool + [None]))


@st.composite
def calm_line(draw, endpoint: str, model: str, n: int) -> bytes:
    """A good request line (hostile Unicode and numbers inside, all valid), fields in any order."""
    needed = "messages" if endpoint == CHAT else "input"
    custom_id = draw(st.text(st.characters(codec="utf-8"), max_size=6)) + f"#{n}"
    members = [("custom_id", json.dumps(custom_id, ensure_ascii=draw(st.booleans()))),
               ("method", '"POST"'), ("url", json.dumps(endpoint)),
               ("body", "{" + ",".join([f'"model":{model}', f'"{needed}":["x"]', '"stream":false',
                                        f'"extra":{draw(safe_json_text)}']) + "}")]
    return ("{" + ",".join(f'"{k}":{v}' for k, v in draw(st.permutations(members))) + "}").encode(
        "utf-8", "surrogatepass")


@st.composite
def request_line(draw, endpoint: str) -> bytes:
    custom_ids = ['"a"', '"b"', '"\u2028"', '"😀"', '"\\ud83d\\ude00"', '""', '"a\\u0000"']
    members: list[tuple[str, str]] = []
    cid = field_text(draw, draw(st.sampled_from(custom_ids)), ["null", "5", '"\\ud800"', "[]", '"a"'])
    method = field_text(draw, '"POST"', ['"GET"', '"post"', "null", "1"])
    url = field_text(draw, json.dumps(endpoint), ['"/v1/embeddings"', f'"{endpoint}/"', "null", '"x"'])
    body_members: list[str] = []
    model = field_text(draw, draw(st.sampled_from(['"m"', '"m"', '"m2"'])), ["null", "3", '"\\ud800"'])
    if model is not None:
        body_members.append(f'"model":{model}')
    needed = field_text(draw, '[{"role":"user","content":"x"}]', ["null", '["a","b"]', "[1,2,3]", '"s"'])
    if needed is not None:
        body_members.append(f'"{"messages" if endpoint == CHAT else "input"}":{needed}')
    stream = draw(st.sampled_from([None, None, None, "true", "false", '"true"', "1"]))
    if stream is not None:
        body_members.append(f'"stream":{stream}')
    if draw(st.booleans()):
        body_members.append(f'"extra":{draw(json_text)}')
    body = field_text(draw, "{" + ",".join(body_members) + "}", ["null", "[]", '"body"', "7"])
    for name, text in (("custom_id", cid), ("method", method), ("url", url), ("body", body)):
        if text is not None:
            members.append((name, text))
    members = draw(st.permutations(members))
    if draw(st.integers(0, 9)) == 0 and members:  # a duplicate key: the last one wins in JSON parsers
        name, _ = draw(st.sampled_from(members))
        members.append((name, draw(st.sampled_from(['"a"', "null", '"POST"', json.dumps(endpoint)]))))
    text = "{" + ",".join(f'"{k}":{v}' for k, v in members) + "}"
    if draw(st.integers(0, 3)) == 0:
        text = " \t" + text + " "
    raw = text.encode("utf-8", "surrogatepass")
    mutation = draw(st.integers(0, 14))
    if mutation == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif mutation == 1:
        raw = b"\xef\xbb\xbf" + raw
    elif mutation == 2:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00", b"\x0b",
                                                b"\xe2\x80", b",", b"}"])) + raw[at:]
    elif mutation == 3:
        raw = draw(json_text).encode("utf-8", "surrogatepass")
    return raw


@st.composite
def batch_file(draw) -> tuple[bytes, str]:
    endpoint = draw(st.sampled_from(ENDPOINTS))
    calm = draw(st.sampled_from([1.0, 1.0, 0.9, 0.5, 0.0]))  # share of good lines
    blank = st.sampled_from([b"", b" ", b"\t", b"\r", b" \t\r"])
    rows = []
    for n in range(draw(st.integers(0, 12))):
        roll = draw(st.floats(0, 1))
        if roll < calm:
            model = draw(st.sampled_from(['"m"'] * 15 + ['"m2"', "null"]))
            rows.append(draw(calm_line(endpoint, model, n)))
        else:
            rows.append(draw(request_line(endpoint) | request_line(endpoint) | blank))
    rows += draw(st.lists(blank, max_size=2))
    ending = draw(st.sampled_from([b"\n", b"\r\n", b"mixed"]))
    out = bytearray()
    for i, row in enumerate(rows):
        out += row
        if i < len(rows) - 1 or draw(st.booleans()):
            out += draw(st.sampled_from([b"\n", b"\r\n"])) if ending == b"mixed" else ending
    return bytes(out), endpoint


cut_points = st.lists(st.integers(0, 4096), max_size=8)


# -- the properties ----------------------------------------------------------------------------------
@budget(250)
@given(batch_file(), cut_points, st.integers(1, 4), st.integers(1, 400))
@example((b"", CHAT), [], 1, 1)
@example((b"\xef\xbb\xbf" + line() + b"\r\n", CHAT), [1, 2], 2, 100)
@example((line("a") + b"\n\n" + line("b"), CHAT), [], 1, 1)
@example((line("a") + b"\n \n\r\n\t\n", CHAT), [3], 1, 1)
def test_validator_agrees_with_the_oracle(file, cuts, max_lines, max_bytes):
    data, endpoint = file
    want = expected(data, endpoint)
    got = run(data, endpoint, cuts=cuts, max_lines=max_lines, max_bytes=max_bytes)
    assert triples(got) == want.errors
    assert got.total == want.total
    for err in got.errors:
        assert set(err) == {"code", "message", "param", "line"} and err["message"]
    if want.ok:
        assert got.model == want.model
        _assert_chunks_cover(data, got.chunks, want.request_lines, max_lines, max_bytes)
    else:
        assert got.chunks == []


def _assert_chunks_cover(data: bytes, chunks, request_lines: list[int], max_lines: int, max_bytes: int):
    """Chunks tile the accepted lines in order, and each byte range holds exactly its lines."""
    assert [c.n for c in chunks] == list(range(len(chunks)))
    assert chunks[0].first_line == 0 and chunks[0].byte_start == 0
    assert chunks[-1].end_line == len(request_lines)
    physical = data.split(b"\n")
    for prev, nxt in zip(chunks, chunks[1:]):
        assert (prev.end_line, prev.byte_end) == (nxt.first_line, nxt.byte_start)
    for c in chunks:
        lines = c.end_line - c.first_line
        assert 1 <= lines <= max_lines
        assert c.byte_end - c.byte_start <= max_bytes or lines == 1
        piece = data[c.byte_start:c.byte_end]
        assert piece.split(b"\n")[:lines] == physical[c.first_line:c.end_line]


@budget(100)
@given(batch_file(), cut_points, cut_points)
def test_block_boundaries_never_change_the_result(file, cuts_a, cuts_b):
    data, endpoint = file
    a = run(data, endpoint, cuts=cuts_a, max_lines=2, max_bytes=120)
    b = run(data, endpoint, cuts=list(range(1, len(data))) if not cuts_b else cuts_b, max_lines=2,
            max_bytes=120)
    assert (a.errors, a.total, a.model, a.chunks) == (b.errors, b.total, b.model, b.chunks)


@budget(60)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_arbitrary_bytes_are_lines_split_on_lf_only(data, cuts):
    bounds = sorted({0, len(data), *(c for c in cuts if 0 < c < len(data))})
    lines = list(iter_lines([data[a:b] for a, b in zip(bounds, bounds[1:])]))
    assert b"".join(data[ln.start:ln.end] for ln in lines) == data
    assert all(b"\n" not in ln.data and data[ln.start:ln.start + len(ln.data)] == ln.data for ln in lines)
    assert [ln.index for ln in lines] == list(range(len(lines)))
    assert triples(run(data)) == expected(data, CHAT).errors


# -- the JSON rule, one case at a time (documents the decisions in jsonl_oracle.py) -------------------
def _with_extra(raw_value: str | bytes) -> bytes:
    if isinstance(raw_value, str):
        raw_value = raw_value.encode("utf-8", "surrogatepass")
    return (b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m",'
            b'"messages":[],"extra":' + raw_value + b"}}")


@pytest.mark.parametrize("value, accepted", [
    ("NaN", False), ("Infinity", False), ("-Infinity", False),
    ("1e400", False), ("-1e400", False), ("1" * 400, False), ("1e308", True), ("1.5e-400", True),
    ("18446744073709551616", True), ("-0", True), ("01", False),
    ('"\\ud800"', False), ('"\\udc00\\ud800"', False), ('"\\ud83d\\ude00"', True), ('"\\u0000"', True),
    ('"\u2028\u2029"', True), ('"\U0010ffff"', True), ('"raw\x00nul"', False), ('"\x7f"', True),
    ("[" * 1022 + "]" * 1022, True),  # 1022 + the two enclosing objects = 1024 levels
    ("[" * 1023 + "]" * 1023, False),
    ('{"k":1,"k":2}', True),
])
def test_json_rule(value, accepted):
    data = _with_extra(value)
    assert (expected(data, CHAT).ok, run(data).ok) == (accepted, accepted)


@pytest.mark.parametrize("raw", [b'"\xff"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xe2\x80"'])
def test_invalid_utf8_inside_a_string_is_a_bad_line(raw):
    data = line("b") + b"\n" + _with_extra(raw) + b"\n"
    assert triples(run(data)) == [("invalid_json_line", 2, None)] == expected(data, CHAT).errors


def test_duplicate_keys_last_one_wins():
    data = (b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]},'
            b'"url":"/v1/embeddings"}\n')
    assert triples(run(data)) == [("invalid_url", 1, "url")]


def test_bom_makes_line_one_a_bad_line_and_crlf_is_fine():
    data = b"\xef\xbb\xbf" + line("a") + b"\r\n" + line("b") + b"\r\n"
    assert triples(run(data)) == [("invalid_json_line", 1, None)]
    assert run(data[3:]).ok and run(data[3:]).total == 2


def test_unicode_line_separators_do_not_split_lines():
    data = line("a\u2028b") + b"\n" + line("a\u2029b") + b"\n" + line("a\x85b") + b"\n"
    result = run(data)
    assert result.ok and result.total == 3


def test_custom_ids_equal_after_escapes_are_duplicates():
    data = line("\U0001f600") + b"\n" + (b'{"custom_id":"\\ud83d\\ude00","method":"POST",'
                                          b'"url":"/v1/chat/completions","body":{"model":"m","messages":[]}}')
    assert triples(run(data)) == [("duplicate_custom_id", 2, "custom_id")]


# -- limits ----------------------------------------------------------------------------------------------
def _many(n: int, endpoint: str = CHAT, **body) -> bytes:
    return b"".join(line(f"r{i}", url=endpoint, **body) + b"\n" for i in range(n))


def test_fifty_thousand_requests_is_the_limit():
    data = _many(50_000) + b"\n \n"
    ok = run(data, max_lines=500)
    assert ok.ok and ok.total == 50_000 and len(ok.chunks) == 100
    over = run(_many(50_000) + line("last"))
    assert triples(over) == [("too_many_tasks", None, None)]
    small = _many(3) + line("last")  # the oracle agrees, checked on a scaled-down limit
    old, jsonl_oracle.MAX_REQUESTS = jsonl_oracle.MAX_REQUESTS, 3
    try:
        assert expected(small, CHAT).errors == [("too_many_tasks", None, None)]
    finally:
        jsonl_oracle.MAX_REQUESTS = old


def test_errors_stop_at_one_thousand():
    data = b"not json\n" * 1500
    result = run(data)
    assert len(result.errors) == MAX_ERRORS
    assert [e["line"] for e in result.errors] == list(range(1, 1001))
    assert triples(result) == expected(data, CHAT).errors


def test_error_cap_counts_blank_lines_too():
    data = b"\n" * 999 + b"[]\n" + b"{}\n" * 5
    assert triples(run(data)) == expected(data, CHAT).errors
    assert len(run(data).errors) == MAX_ERRORS


def test_embedding_inputs_limit_is_reported_on_the_crossing_line():
    emb = "/v1/embeddings"
    data = (line("a", url=emb, input=["x"] * 25_000) + b"\n" + line("b", url=emb, input=["x"] * 25_000) + b"\n")
    assert run(data, emb).ok
    over = data + line("c", url=emb, input=[[1, 2], [3]]) + b"\n" + line("d", url=emb, input="x") + b"\n"
    assert triples(run(over, emb)) == [("too_many_embedding_inputs", 3, "body.input")] == expected(over, emb).errors
    tokens = data + line("c", url=emb, input=[1, 2, 3]) + b"\n"  # one token array is one input
    assert triples(run(tokens, emb)) == [("too_many_embedding_inputs", 3, "body.input")]


def test_empty_and_blank_only_files():
    for data in (b"", b"\n", b"\r\n", b" \n\t\n\n", b"   "):
        assert triples(run(data)) == [("empty_file", None, None)] == expected(data, CHAT).errors


def test_a_huge_line_and_a_huge_custom_id_are_one_request_in_a_chunk_of_their_own():
    big = line("x" * 2_000_000, content="y" * 3_000_000)
    data = line("a") + b"\n" + big + b"\n" + line("b") + b"\n"
    result = run(data, max_bytes=1024)
    assert result.ok and result.total == 3
    assert [(c.first_line, c.end_line) for c in result.chunks] == [(0, 1), (1, 2), (2, 3)]
    assert data[result.chunks[1].byte_start:result.chunks[1].byte_end] == big + b"\n"


def test_line_numbers_count_physical_lines_with_crlf_and_blank_tail():
    data = line("a") + b"\r\n" + b"{bad\r\n" + line("a") + b"\r\n" + line("c", model="other") + b"\r\n\r\n \r\n"
    assert triples(run(data)) == [("invalid_json_line", 2, None), ("duplicate_custom_id", 3, "custom_id"),
                                  ("mismatched_model", 4, "body.model")]


def test_a_trailing_form_feed_line_is_not_json_whitespace():
    data = line("a") + b"\n\x0c\n"
    assert triples(run(data)) == [("invalid_json_line", 2, None)] == expected(data, CHAT).errors


def test_oracle_self_check():
    """The oracle's JSON rule is the strict one (guards the oracle against drifting to Python's json)."""
    for bad in (b"NaN", b'"\\ud800"', b"1e400", b"\xef\xbb\xbf{}", b"[" * 1025 + b"]" * 1025):
        with pytest.raises(Exception):
            strict_json(bad)
    assert strict_json(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_stored_errors_are_bounded_in_bytes_not_characters():
    # 1,002 duplicates of a 100-emoji custom_id: each message quotes it. Counted in characters the
    # errors came to ~430 KB, over DynamoDB's 400 KB item, and the batch could never leave validating.
    emoji = "\U0001F600" * 100
    data = b"".join(line(emoji) + b"\n" for _ in range(1002))
    result = run(data)
    assert result.errors and all(e["code"] == "duplicate_custom_id" for e in result.errors)
    assert len(orjson.dumps(result.errors)) <= validation.ERRORS_MAX_BYTES
    quoted = result.errors[0]["message"].split("'")[1]
    assert quoted.endswith("…") and len(quoted[:-1].encode()) <= validation.QUOTE_BYTES
    assert quoted[:-1] == "\U0001F600" * (validation.QUOTE_BYTES // 4)  # cut between characters
