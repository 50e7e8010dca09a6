"""Synthetic inputs shaped like real batch files: chat-completions lines of a few KB (system + user
message with ordinary prose, some quotes, escapes and non-ASCII), and result lines as the engine
writes them."""
from __future__ import annotations

import random
from pathlib import Path

import orjson

MODEL = "gpt-4o-mini"
_WORDS = ("the model should answer briefly and cite the \"source\" it used; résumé naïve café — "
          "summarise this paragraph about distributed systems, queues, retries, idempotency,\n"
          "backoff and tail latency in plain English for an engineer who is new to the team. ").split(" ")


def _text(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        w = rng.choice(_WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def chat_line(i: int, approx_bytes: int = 4096, *, rng: random.Random | None = None,
              marker: str = "", model: str = MODEL) -> bytes:
    """One request line of about `approx_bytes` bytes (without its newline)."""
    rng = rng or random.Random(i)
    user = max(16, approx_bytes - 330)
    body = {"model": model, "max_tokens": 256, "temperature": 0.2,
            "messages": [{"role": "system", "content": "You are a careful assistant. " + marker},
                         {"role": "user", "content": _text(rng, user)}]}
    return orjson.dumps({"custom_id": f"request-{i:07d}", "method": "POST", "url": "/v1/chat/completions",
                         "body": body})


def write_batch_file(path: Path, lines: int, approx_bytes: int = 4096) -> int:
    """Write `lines` chat lines to `path`; returns the file size. A few distinct texts are reused
    (with fresh custom_ids) so 200 MB is written in seconds."""
    rng = random.Random(1234)
    templates = [orjson.loads(chat_line(i, approx_bytes, rng=rng)) for i in range(64)]
    size = 0
    with path.open("wb") as f:
        for i in range(lines):
            obj = templates[i % len(templates)]
            obj["custom_id"] = f"request-{i:07d}"
            data = orjson.dumps(obj) + b"\n"
            f.write(data)
            size += len(data)
    return size


def small_chat_lines(n: int, *, prefix: str = "r", marker: str = "", content_bytes: int = 120) -> bytes:
    """`n` short request lines (local-mode runs, where the direct upload limit is 4 MiB)."""
    text = ("hello " * (content_bytes // 6 + 1))[:content_bytes]
    return b"".join(orjson.dumps({"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": MODEL, "messages": [
                                      {"role": "user", "content": f"{text} {marker}".strip()}]}}) + b"\n"
                    for i in range(n))


def result_line(i: int, approx_bytes: int) -> bytes:
    """An output-file line as the worker writes it, of about `approx_bytes` bytes."""
    answer = _text(random.Random(i % 97), max(16, approx_bytes - 520))
    body = {"id": f"chatcmpl-{i:024d}", "object": "chat.completion", "created": 1760000000, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 250, "total_tokens": 1150,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}}
    return orjson.dumps({"id": f"batch_req_{i:032x}", "custom_id": f"request-{i:07d}",
                         "response": {"status_code": 200, "request_id": f"req_{i:032x}", "body": body},
                         "error": None}) + b"\n"
