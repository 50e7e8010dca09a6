"""Object ids (reference §12).

batch_  + 32 hex: "f", then created_at in milliseconds (12 hex), then 76 random bits (19 hex). Ids
          (and so the table's sort keys, "BATCH#" + id) sort newest-first to the millisecond, and
          batches of one millisecond in a stable order: by their random part.
          Ids made before this scheme are 8 hex of seconds + 24 random hex. They stay valid and are
          still looked up by id; their first hex digit is below "f" until 2097, so every one sorts
          below (older than) every new id.
file-   + 24 base62: a fixed-width base62 number whose high part is created_at in milliseconds and
          whose low 96 bits are random, so file ids sort by creation time too (base62 alphabet is in
          ASCII order, so lexicographic order = numeric order).
batch_req_, upload_, part_ + 32 hex (random).
An id is never the authorization: every lookup is by (tenant, id).
"""
from __future__ import annotations

import re
import secrets
import time

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

BATCH_ID = re.compile(r"^batch_[0-9a-f]{32}$")
FILE_ID = re.compile(r"^file-[0-9A-Za-z]{24}$")
UPLOAD_ID = re.compile(r"^upload_[0-9a-f]{32}$")
PART_ID = re.compile(r"^part_[0-9a-f]{32}$")


def _b62(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_B62[r])
    s = "".join(reversed(out)).rjust(width, "0")
    if len(s) > width:
        raise ValueError("number too large for width")
    return s


def _clock() -> float:
    return time.time()


def batch_id(created_at: int | None = None) -> str:
    """A new batch id for now, or for the second `created_at` (its millisecond taken from the clock
    when the clock is in that second, else its first millisecond)."""
    ms = int(_clock() * 1000)
    if created_at is not None and ms // 1000 != created_at:
        ms = created_at * 1000
    return f"batch_f{ms & 0xFFFFFFFFFFFF:012x}{secrets.randbits(76):019x}"


def batch_created_ms(batch_id: str) -> int:
    """Creation time in ms that the id encodes (a legacy id only knows its second)."""
    digits = batch_id[len("batch_"):]
    if digits[0] == "f":
        return int(digits[1:13], 16)
    return int(digits[:8], 16) * 1000


def file_id(created_at_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if created_at_ms is None else created_at_ms
    return "file-" + _b62((ms << 96) | secrets.randbits(96), 24)


def batch_request_id() -> str:
    return "batch_req_" + secrets.token_hex(16)


def upload_id() -> str:
    return "upload_" + secrets.token_hex(16)


def part_id() -> str:
    return "part_" + secrets.token_hex(16)


def event_id() -> str:
    return "evt_" + secrets.token_hex(16)
