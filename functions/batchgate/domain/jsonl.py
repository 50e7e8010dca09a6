"""Split a byte stream into JSONL lines on b"\\n" only (never on other Unicode line breaks), keeping
each line's byte range so chunks can later be read back with ranged GETs. Memory is bounded by the
longest line plus one read block."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Line:
    index: int       # 0-based physical line number
    data: bytes      # without the trailing b"\n"
    start: int       # byte offset of the first byte
    end: int         # byte offset just past the line, including its b"\n" when present


def iter_lines(blocks: Iterable[bytes], *, offset: int = 0, first_index: int = 0) -> Iterator[Line]:
    """Lines of the concatenated `blocks`; a final line without a newline still counts, a file that
    ends with b"\\n" has no extra empty line after it. `offset`/`first_index` place a ranged read."""
    buf = bytearray()
    buf_start = offset
    index = first_index
    for block in blocks:
        if not block:
            continue
        scan_from = len(buf)
        buf += block
        cut = 0
        while True:
            nl = buf.find(b"\n", max(cut, scan_from))
            if nl < 0:
                break
            yield Line(index, bytes(buf[cut:nl]), buf_start + cut, buf_start + nl + 1)
            index += 1
            cut = nl + 1
        if cut:
            del buf[:cut]
            buf_start += cut
    if buf:
        yield Line(index, bytes(buf), buf_start, buf_start + len(buf))


# Raw JSON values, found by scanning bytes (regular expressions do the per-byte work in C), never by
# decoding and re-encoding: what a user wrote reaches the upstream exactly, however deep (orjson
# encodes 254 levels at most) and whatever its numbers (integers beyond 64 bits would become floats).
_WS = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_STRUCTURAL = re.compile(rb'["\[\]{}]')
_SCALAR = re.compile(rb"[^,}\] \t\r\n]+")


def _at(pattern: re.Pattern[bytes], data: bytes, i: int) -> re.Match[bytes]:
    m = pattern.match(data, i)
    if m is None:
        raise ValueError(f"not valid JSON at byte {i}")
    return m


def _skip_value(data: bytes, i: int) -> int:
    first = data[i:i + 1]
    if first == b'"':
        return _at(_STRING, data, i).end()
    if first not in (b"{", b"["):
        return _at(_SCALAR, data, i).end()
    depth = 0
    while True:
        m = _STRUCTURAL.search(data, i)
        if m is None:
            raise ValueError("unterminated JSON value")
        char = m.group()
        if char == b'"':
            i = _at(_STRING, data, m.start()).end()
            continue
        depth += 1 if char in (b"{", b"[") else -1
        i = m.end()
        if depth == 0:
            return i


def raw_member(data: bytes, key: str) -> bytes | None:
    """The exact bytes of the value of `key` in the JSON object `data` (already known to be valid
    JSON, e.g. a validated input line); the last one when the key repeats, as decoders keep; None
    when absent."""
    i = _at(_WS, data, 0).end()
    if data[i:i + 1] != b"{":
        raise ValueError("not a JSON object")
    i += 1
    found = None
    while True:
        i = _at(_WS, data, i).end()
        if data[i:i + 1] == b"}":
            return found
        name = _at(_STRING, data, i)
        i = _at(_WS, data, name.end()).end() + 1  # past the ':'
        start = _at(_WS, data, i).end()
        i = _skip_value(data, start)
        if orjson.loads(name.group()) == key:
            found = data[start:i]
        i = _at(_WS, data, i).end()
        if data[i:i + 1] == b",":
            i += 1


def one_line_json(raw: bytes) -> bytes:
    """Valid JSON on one line: a raw newline in valid JSON is whitespace (inside strings it must be
    escaped), so it can become a space without changing the value."""
    return raw.replace(b"\r", b" ").replace(b"\n", b" ") if b"\n" in raw or b"\r" in raw else raw
