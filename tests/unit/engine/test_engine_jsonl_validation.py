"""The line splitter, line validation and the chunk manifest (pure, no AWS)."""
from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from batchgate.domain.jsonl import iter_lines
from batchgate.domain.validation import validate_lines


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=8),
       st.booleans(), st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=5))
def test_split_matches_bytes_split_whatever_the_block_sizes(lines, trailing_nl, sizes):
    data = b"\n".join(lines) + (b"\n" if trailing_nl and lines else b"")
    blocks, pos, i = [], 0, 0
    while pos < len(data):
        blocks.append(data[pos:pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    got = list(iter_lines(blocks))
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert [g.data for g in got] == expected
    for g in got:  # byte ranges read the line back
        assert data[g.start:g.end].rstrip(b"\n") == g.data
    assert [g.index for g in got] == list(range(len(got)))


def test_only_newline_splits_lines():
    data = "a\u2028b\rc\x85d\ne".encode()
    assert [line.data for line in iter_lines([data])] == ["a\u2028b\rc\x85d".encode(), b"e"]


def _chat(i: int, **body) -> bytes:
    return orjson.dumps({"custom_id": f"c{i:03d}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "m", "messages": [], **body}})


def _validate(data: bytes, endpoint="/v1/chat/completions", max_lines=500, max_bytes=8 << 20, lanes=0):
    return validate_lines(iter_lines([data]), endpoint, chunk_max_lines=max_lines, chunk_max_bytes=max_bytes,
                          lanes=lanes)


def _sizes(result) -> list[int]:
    return [c.end_line - c.first_line for c in result.chunks]


def test_chunks_cut_on_line_count_and_bytes_with_exact_ranges():
    data = b"\n".join(_chat(i) for i in range(12)) + b"\n"
    result = _validate(data, max_lines=5)
    assert result.ok and result.total == 12 and result.model == "m"
    # As few chunks as 5 lines a chunk allows (3), of even sizes: not 5 + 5 + 2.
    assert [(c.first_line, c.end_line) for c in result.chunks] == [(0, 4), (4, 8), (8, 12)]
    assert result.chunks[0].byte_start == 0 and result.chunks[-1].byte_end == len(data)
    assert all(a.byte_end == b.byte_start for a, b in zip(result.chunks, result.chunks[1:]))
    line_len = len(_chat(0)) + 1
    by_bytes = _validate(data, max_bytes=line_len * 3)
    assert [c.end_line - c.first_line for c in by_bytes.chunks] == [3, 3, 3, 3]


def test_chunks_are_even_and_fill_the_batchs_lanes_evenly():
    data = b"\n".join(_chat(i) for i in range(30)) + b"\n"
    assert _sizes(_validate(data, max_lines=20)) == [15, 15]            # not 20 + 10
    assert _sizes(_validate(data, max_lines=7)) == [6, 6, 6, 6, 6]      # 5 chunks, no lanes
    # 5 chunks on 2 lanes would leave one lane a chunk to run alone: 6, three a lane.
    assert _sizes(_validate(data, max_lines=7, lanes=2)) == [5] * 6
    assert _sizes(_validate(data, max_lines=7, lanes=4)) == [4] * 6 + [3] * 2
    assert _sizes(_validate(data, max_lines=7, lanes=8)) == [6] * 5     # fewer chunks than lanes: all at once
    odd = _validate(b"\n".join(_chat(i) for i in range(11)), max_lines=4)     # 11 lines: 3 chunks
    assert _sizes(odd) == [4, 4, 3] and odd.chunks[-1].end_line == 11


def test_even_chunks_still_keep_the_byte_cap():
    data = b"\n".join(_chat(i, pad="x" * (300 if i == 3 else 0)) for i in range(8)) + b"\n"
    result = _validate(data, max_lines=4, max_bytes=len(_chat(0)) * 4)
    assert sum(_sizes(result)) == 8
    assert all(c.byte_end - c.byte_start <= len(_chat(0)) * 4 or c.end_line - c.first_line == 1
               for c in result.chunks)
    assert all(a.end_line == b.first_line and a.byte_end == b.byte_start for a, b in zip(result.chunks,
                                                                                            result.chunks[1:]))


def test_a_line_longer_than_the_byte_cap_gets_its_own_chunk():
    data = _chat(0) + b"\n" + _chat(1, pad="x" * 500) + b"\n" + _chat(2)
    result = _validate(data, max_bytes=200)
    assert [(c.first_line, c.end_line) for c in result.chunks] == [(0, 1), (1, 2), (2, 3)]


def test_trailing_blank_lines_are_ignored_but_inner_ones_are_errors():
    assert _validate(_chat(0) + b"\n\n \n\r\n").ok
    bad = _validate(_chat(0) + b"\n\n" + _chat(1))
    assert [(e["line"], e["code"]) for e in bad.errors] == [(2, "invalid_json_line")]


def test_crlf_lines_are_accepted():
    result = _validate(_chat(0) + b"\r\n" + _chat(1) + b"\r\n")
    assert result.ok and result.total == 2


def test_more_than_50000_requests_is_too_many_tasks():
    line = (b'{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {"model": "m", "messages": []}}')
    data = b"\n".join(line % i for i in range(50_001))
    result = _validate(data)
    assert [e["code"] for e in result.errors] == ["too_many_tasks"]


def test_more_than_50000_embedding_inputs_is_rejected_on_the_crossing_line():
    lines = [orjson.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                           "body": {"model": "e", "input": ["x"] * 20_000}}) for i in range(3)]
    result = _validate(b"\n".join(lines), endpoint="/v1/embeddings")
    assert [(e["line"], e["code"]) for e in result.errors] == [(3, "too_many_embedding_inputs")]
    tokens = orjson.dumps({"custom_id": "t", "method": "POST", "url": "/v1/embeddings",
                           "body": {"model": "e", "input": [1, 2, 3]}})
    assert _validate(tokens, endpoint="/v1/embeddings").ok


def test_errors_are_capped_at_1000_entries():
    result = _validate(b"\n".join(b"nope" for _ in range(1500)))
    assert len(result.errors) == 1000 and result.errors[-1]["line"] == 1000


def test_empty_and_blank_files_are_empty_file():
    for data in (b"", b"\n", b"  \n\n"):
        assert [e["code"] for e in _validate(data).errors] == ["empty_file"]


def test_model_optional_for_moderations_but_one_model_per_batch():
    line = lambda i, **b: orjson.dumps({"custom_id": f"m{i}", "method": "POST", "url": "/v1/moderations",
                                        "body": {"input": "x", **b}})
    assert _validate(line(0) + b"\n" + line(1), endpoint="/v1/moderations").ok
    mixed = _validate(line(0) + b"\n" + line(1, model="omni-moderation-latest"), endpoint="/v1/moderations")
    assert [e["code"] for e in mixed.errors] == ["mismatched_model"]
    missing_input = _validate(orjson.dumps({"custom_id": "a", "method": "POST", "url": "/v1/moderations",
                                            "body": {}}), endpoint="/v1/moderations")
    assert [(e["code"], e["param"]) for e in missing_input.errors] == [("invalid_request", "body.input")]


def test_invalid_utf8_and_non_standard_numbers_are_invalid_json():
    for bad in (b'{"custom_id": "\xff"}', b'{"a": Infinity}', b'{"a": NaN}'):
        assert [e["code"] for e in _validate(bad).errors] == ["invalid_json_line"]


def test_raw_member_is_the_exact_bytes_however_deep_or_large():
    from batchgate.domain.jsonl import raw_member
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    big = b'{"n": 1180591620717411303424, "s": "x\\"}]{[", "f": 1.0e400}'
    line = b' { "custom_id" : "c", "b\\u006fdy": ' + deep + b' , "url":"/v1/x","body" :' + big + b'}'
    assert raw_member(line, "body") == big  # the last of a repeated key, as decoders keep
    assert raw_member(b'{"body":' + deep + b'}', "body") == deep
    assert raw_member(b'{"a":[1,{"body":2}],"body":"t\\\\"}', "body") == b'"t\\\\"'
    assert raw_member(b'{"a":1}', "body") is None
    assert raw_member(b'{"body":-0.5e-3}', "body") == b"-0.5e-3"


def test_a_line_validation_accepts_is_sent_as_written():
    from batchgate.domain.chunk_lines import parse_lines
    body = (b'{"model":"m","messages":[{"role":"user","content":' + b"[" * 600 + b"]" * 600
            + b'}],"seed":295147905179352825856}')
    line = b'{"custom_id":"deep","method":"POST","url":"/v1/chat/completions","body":' + body + b"}\n"
    [parsed] = parse_lines(line, offset=0, first_index=0)
    assert parsed.body == body


def test_an_answer_is_carried_as_it_came():
    from batchgate.domain.jsonl import one_line_json
    from batchgate.domain.results import response_line
    raw = b'{\n  "n": 1180591620717411303424,\n  "d": ' + b"[" * 600 + b"]" * 600 + b"\n}"
    line = response_line("c", 200, "req_1", {"ignored": True}, raw_json=one_line_json(raw))
    assert line.count(b"\n") == 1 and line.endswith(b"}\n")
    assert b'"n": 1180591620717411303424' in line
    head = orjson.loads(line[:line.index(b',"response"')] + b"}")
    assert head["custom_id"] == "c" and head["id"].startswith("batch_req_")
