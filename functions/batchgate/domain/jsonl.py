"""Split a byte stream into JSONL lines on b"\\n" only (never on other Unicode line breaks), keeping
each line's byte range so chunks can later be read back with ranged GETs. Memory is bounded by the
longest line plus one read block."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator


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
