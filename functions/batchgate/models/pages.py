"""List pages bounded in bytes as well as in items: a Lambda answer may be at most 6 MB."""
from __future__ import annotations

from typing import Any

import orjson

# Room under Lambda's 6,291,456-byte response limit for the list envelope and the proxy answer.
PAGE_MAX_BYTES = 4 * 1024 * 1024


def fit_page(data: list[dict[str, Any]], has_more: bool,
             max_bytes: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """The longest prefix of `data` whose JSON fits `max_bytes` (always at least one object: one
    stored item is at most 400 KB), and whether more remain. Clients page on with `after=last_id`,
    as they do when `limit` ends a page."""
    max_bytes = max_bytes or PAGE_MAX_BYTES
    total = 0
    for n, obj in enumerate(data):
        total += len(orjson.dumps(obj)) + 1
        if total > max_bytes and n > 0:
            return data[:n], True
    return data, has_more
