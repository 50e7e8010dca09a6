"""Input builders shared by the engine integration tests."""
from __future__ import annotations

import orjson


def chat_lines(n: int, *, model: str = "gpt-test", extra: dict | None = None, prefix: str = "req") -> bytes:
    """n valid chat lines; `extra` maps a line index to text appended to its message (fault markers)."""
    out = []
    for i in range(n):
        text = f"Say hello number {i}." + ((extra or {}).get(i, ""))
        out.append(orjson.dumps({"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": model, "messages": [{"role": "user", "content": text}]}}))
    return b"\n".join(out) + b"\n"
