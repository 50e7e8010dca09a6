"""Acceptance of the batch engine as a user would try it: `batchgate local` started with the CLI, driven
only by the official openai SDK. Prints the measured figures as JSON lines.

    .venv/bin/python docs/acceptance/engine_acceptance.py [--chat-lines 10000] [--embedding-lines 1000]
        [--only big,faults,invalid,cancel,expiry]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "batchgate"
KEY, TENANT = "sk-acceptance", "acceptance"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def report(name: str, **figures) -> None:
    print(json.dumps({"check": name, **figures}), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_mode(*extra: str):
    """`batchgate local` as a subprocess; yields an SDK client once it printed `ready:`."""
    port = free_port()
    proc = subprocess.Popen([str(CLI), "local", "--port", str(port), "--api-key", f"{KEY}={TENANT}", *extra],
                            stdout=subprocess.PIPE, stderr=open(f"/tmp/acceptance-local-{port}.log", "w"),
                            text=True, cwd=ROOT)
    try:
        t0 = time.monotonic()
        line = proc.stdout.readline()
        if not line.startswith("ready: "):
            raise RuntimeError(f"local mode did not start: {line!r} (see /tmp/acceptance-local-{port}.log)")
        report("local_mode_started", seconds=round(time.monotonic() - t0, 1), args=list(extra))
        yield openai.OpenAI(base_url=line.split(" ", 1)[1].strip(), api_key=KEY, max_retries=2, timeout=120)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def chat_line(i: int, content: str | None = None, prefix: str = "chat") -> dict:
    return {"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "dev-model", "messages": [{"role": "user", "content": content or f"hello {i}"}]}}


def embedding_line(i: int) -> dict:
    return {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "dev-embed", "input": f"text number {i}"}}


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def upload(client, data: bytes):
    return client.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")


def create(client, file_id: str, endpoint: str = "/v1/chat/completions"):
    return client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h")


def wait(client, batch_id: str, timeout: float = 1800, poll: float = 0.5, statuses=TERMINAL):
    """Poll until one of `statuses`; returns (batch, [(t, status, completed, failed)])."""
    t0 = time.monotonic()
    trace = []
    while True:
        b = client.batches.retrieve(batch_id)
        trace.append((round(time.monotonic() - t0, 2), b.status, b.request_counts.completed,
                      b.request_counts.failed))
        if b.status in statuses or time.monotonic() - t0 > timeout:
            return b, trace
        time.sleep(poll)


def results(client, batch) -> tuple[list[dict], list[dict]]:
    def read(fid):
        return [json.loads(x) for x in client.files.content(fid).read().splitlines()] if fid else []
    return read(batch.output_file_id), read(batch.error_file_id)


def error_codes(err: list[dict]) -> dict:
    """Error lines by their error code, or by the upstream's status code when it answered."""
    codes: dict = {}
    for r in err:
        key = (r["error"] or {}).get("code") or r["response"]["status_code"]
        codes[key] = codes.get(key, 0) + 1
    return codes


def check_big(client, n: int, make, endpoint: str, name: str) -> None:
    rows = [make(i) for i in range(n)]
    f = upload(client, jsonl(rows))
    t0 = time.monotonic()
    b = create(client, f.id, endpoint)
    b, trace = wait(client, b.id)
    wall = time.monotonic() - t0
    out, err = results(client, b)
    ids = [r["custom_id"] for r in out] + [r["custom_id"] for r in err]
    expected = [r["custom_id"] for r in rows]
    usage_sum = {"input": 0, "output": 0, "total": 0}
    for r in out:
        u = r["response"]["body"]["usage"]
        usage_sum["input"] += u.get("prompt_tokens", 0)
        usage_sum["output"] += u.get("completion_tokens", 0)
        usage_sum["total"] += u.get("total_tokens", 0)
    progress = sorted({c for _, s, c, _ in trace if s == "in_progress"})
    report(name, status=b.status, wall_seconds=round(wall, 1), lines=n,
           counts=b.request_counts.model_dump(),
           exactly_once=sorted(ids) == sorted(expected) and len(ids) == len(set(ids)),
           output_in_input_order=[r["custom_id"] for r in out] == [c for c in expected if c in
                                                                 {r["custom_id"] for r in out}],
           counts_add_up=(b.request_counts.completed == len(out) and b.request_counts.failed == len(err)
                          and b.request_counts.total == n),
           usage=b.usage.model_dump() if b.usage else None, usage_from_bodies=usage_sum,
           usage_matches=bool(b.usage) and (b.usage.input_tokens, b.usage.output_tokens, b.usage.total_tokens)
           == (usage_sum["input"], usage_sum["output"], usage_sum["total"]),
           completed_values_seen_while_in_progress=progress[:5] + (["..."] if len(progress) > 10 else [])
           + progress[-5:], distinct_progress_values=len(progress))


def check_faults(client) -> None:
    contents = ["__fail_429_once__ a", "__fail_429_ms_once__ b", "__fail_500_once__ c", "__fail_400__ d", "ok e"]
    f = upload(client, jsonl(chat_line(i, c, "fault") for i, c in enumerate(contents)))
    b, _ = wait(client, create(client, f.id).id, timeout=120)
    out, err = results(client, b)
    report("faults", status=b.status, counts=b.request_counts.model_dump(),
           output=[r["custom_id"] for r in out],
           errors=[(r["custom_id"], r["response"] and r["response"]["status_code"], r["error"],
                    r["response"] and r["response"]["body"]) for r in err])


def check_invalid(client) -> None:
    good = json.dumps(chat_line(0)).encode()
    data = b"\n".join([
        good,                                                     # 1 ok
        b"{not json",                                             # 2 invalid_json_line
        json.dumps({**chat_line(2), "custom_id": "chat-0"}).encode(),   # 3 duplicate_custom_id
        json.dumps({**chat_line(3), "url": "/v1/embeddings"}).encode(),  # 4 mismatched_endpoint? / invalid_url
        json.dumps({**chat_line(4), "method": "GET"}).encode(),   # 5 invalid_method
        json.dumps({"custom_id": "x5", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"messages": []}}).encode(),          # 6 missing model
        json.dumps({**chat_line(6), "body": {**chat_line(6)["body"], "model": "other"}}).encode(),  # 7 model
    ]) + b"\n"
    f = upload(client, data)
    b, _ = wait(client, create(client, f.id).id, timeout=120)
    report("invalid_lines", status=b.status,
           errors=[(e.line, e.code, e.param, e.message) for e in (b.errors.data if b.errors else [])])


def check_cancel(client) -> None:
    # 4 chunks of 500 lines, 1 s each: a chunk takes ~16 s at 32 lines in flight, two chunks run at once.
    n = 2000
    f = upload(client, jsonl(chat_line(i, f"__sleep_ms:1000__ slow {i}", "slow") for i in range(n)))
    b = create(client, f.id)
    wait(client, b.id, timeout=120, poll=0.2, statuses={"in_progress"} | TERMINAL)
    time.sleep(3)
    t0 = time.monotonic()
    client.batches.cancel(b.id)
    b, trace = wait(client, b.id, timeout=300, poll=0.1)
    latency = time.monotonic() - t0
    out, err = results(client, b)
    codes = error_codes(err)
    ids = [r["custom_id"] for r in out + err]
    report("cancel_in_progress", status=b.status, cancel_latency_seconds=round(latency, 2),
           counts=b.request_counts.model_dump(), output_lines=len(out), error_codes=codes,
           exactly_once=sorted(ids) == sorted(f"slow-{i}" for i in range(n)),
           counts_match=b.request_counts.completed == len(out)
           and b.request_counts.failed == len(err) - codes.get("batch_cancelled", 0),
           statuses=sorted({s for _, s, _, _ in trace}))
    # validating: a big input so validation takes a moment
    f = upload(client, jsonl(chat_line(i, prefix="val") for i in range(20000)))
    b = create(client, f.id)
    first = client.batches.cancel(b.id)
    t0 = time.monotonic()
    b, _ = wait(client, b.id, timeout=300, poll=0.1)
    out, err = results(client, b)
    report("cancel_validating", status_at_cancel=first.status, final=b.status,
           latency_seconds=round(time.monotonic() - t0, 2), counts=b.request_counts.model_dump(),
           output_lines=len(out), error_lines=len(err))


def check_expiry(client) -> None:
    # 2 s per line, 32 in flight: ~13 s of work against a 5 s window.
    n = 200
    f = upload(client, jsonl(chat_line(i, f"__sleep_ms:2000__ slow {i}", "exp") for i in range(n)))
    b = create(client, f.id)
    t0 = time.monotonic()
    b, trace = wait(client, b.id, timeout=300, poll=0.2)
    out, err = results(client, b)
    codes = error_codes(err)
    ids = [r["custom_id"] for r in out + err]
    report("expiry", status=b.status, seconds_to_terminal=round(time.monotonic() - t0, 1),
           expires_after=b.expires_at - b.created_at if b.expires_at else None,
           expired_at_minus_created=(b.expired_at - b.created_at) if b.expired_at else None,
           counts=b.request_counts.model_dump(), output_lines=len(out), error_codes=codes,
           exactly_once=sorted(ids) == sorted(f"exp-{i}" for i in range(n)),
           statuses=sorted({s for _, s, _, _ in trace}))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chat-lines", type=int, default=10000)
    p.add_argument("--embedding-lines", type=int, default=1000)
    p.add_argument("--only", default="big,faults,invalid,cancel,expiry")
    args = p.parse_args()
    only = set(args.only.split(","))
    if only & {"big", "faults", "invalid", "cancel"}:
        with local_mode() as client:
            if "big" in only:
                check_big(client, args.chat_lines, chat_line, "/v1/chat/completions", "chat_batch")
                check_big(client, args.embedding_lines, embedding_line, "/v1/embeddings", "embeddings_batch")
            if "faults" in only:
                check_faults(client)
            if "invalid" in only:
                check_invalid(client)
            if "cancel" in only:
                check_cancel(client)
    if "expiry" in only:
        with local_mode("--completion-window-seconds", "5") as client:
            check_expiry(client)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
