"""`batchgate smoke --base-url URL --api-key KEY`: prove a deployment works end to end.

Drives the public API with the official `openai` SDK (and plain HTTP where a client that does not
follow redirects matters): upload, a chat batch and an embeddings batch to completion, content
downloaded byte for byte (a small file and one above the redirect size), a cancel with partial
results, a 404 for a foreign id and the error envelope. One line per check; exit status 1 when any
check fails, 0 when all pass. Run it after every deploy.
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import openai

DEFAULT_BIG_BYTES = 4 * 1024 * 1024 + 64 * 1024   # just above the default 4 MiB redirect size
DEFAULT_PART_BYTES = 4 * 1024 * 1024              # the default largest upload part
TERMINAL = {"completed", "failed", "expired", "cancelled"}


class CheckFailed(Exception):
    pass


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the API: {exc.__cause__ or exc}"
    return f"{type(exc).__name__}: {exc}"


def _lines(endpoint: str, model: str, n: int, tag: str, pad: int = 0) -> bytes:
    out = []
    for i in range(n):
        if endpoint == "/v1/embeddings":
            body = {"model": model, "input": f"batchgate smoke {tag} {i}" + " x" * pad}
        else:
            body = {"model": model, "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"Say OK. (batchgate smoke {tag} {i}){' x' * pad}"}]}
        out.append(json.dumps({"custom_id": f"{tag}-{i}", "method": "POST", "url": endpoint, "body": body}))
    return ("\n".join(out) + "\n").encode()


@dataclass
class Smoke:
    base_url: str
    api_key: str
    chat_model: str = "gpt-4o-mini"
    embedding_model: str = "text-embedding-3-small"
    big_bytes: int = DEFAULT_BIG_BYTES
    part_bytes: int = DEFAULT_PART_BYTES
    timeout: float = 900.0
    poll_seconds: float = 2.0
    # Put in the cancel batch's prompts, `{ms}` growing by 500 per line: local mode's development
    # upstream then takes 0.5 s, 1 s, ... 20 s for the lines, so a cancel sent a few seconds after the
    # batch starts lands with some answered and some not; a real model reads it as a few more words.
    cancel_line_marker: str = "__sleep_ms:{ms}__"
    cancel_after_seconds: float = 4.0
    out: Callable[[str], None] = print
    failures: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.base_url = self.base_url.rstrip("/")
        self.client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=2, timeout=120)

    # -- plumbing --------------------------------------------------------------------------------
    def check(self, name: str, fn: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail = fn()
        except Exception as exc:  # every failure becomes one clear line, then the next check runs
            self.failures.append(name)
            self.out(f"FAIL {name}: {_describe(exc)}")
            return False
        self.out(f"ok   {name} ({time.monotonic() - started:.1f}s){': ' + detail if detail else ''}")
        return True

    def skip(self, name: str, why: str) -> None:
        self.failures.append(name)
        self.out(f"FAIL {name}: not run, {why}")

    def wait(self, batch_id: str, until: Callable = lambda b: b.status in TERMINAL):
        deadline = time.monotonic() + self.timeout
        while True:
            batch = self.client.batches.retrieve(batch_id)
            if until(batch):
                return batch
            _expect(time.monotonic() < deadline,
                    f"batch {batch_id} still {batch.status} after {self.timeout:.0f}s "
                    f"({batch.request_counts.completed if batch.request_counts else 0} done)")
            time.sleep(self.poll_seconds)

    def upload(self, data: bytes, name: str) -> str:
        return self.client.files.create(file=(name, data), purpose="batch").id

    # -- checks ----------------------------------------------------------------------------------
    def run(self) -> int:
        ok = self.check("error envelope", self.error_envelope)
        ok = self.check("404 for a foreign id", self.foreign_ids) and ok
        small = _lines("/v1/chat/completions", self.chat_model, 3, "chat")
        state: dict = {}

        def upload_small():
            state["small"] = self.upload(small, "smoke-chat.jsonl")
            f = self.client.files.retrieve(state["small"])
            _expect(f.bytes == len(small) and f.purpose == "batch", f"file object says {f.bytes} bytes, {f.purpose}")
            return state["small"]

        if self.check("upload", upload_small):
            self.check("download small file byte for byte", lambda: self.download(state["small"], small))
            self.check("chat batch to completion", lambda: self.batch_to_completion(
                state["small"], "/v1/chat/completions", 3))
        else:
            self.skip("download small file byte for byte", "the upload failed")
            self.skip("chat batch to completion", "the upload failed")
        self.check("embeddings batch to completion", self.embeddings)
        self.check(f"download file above the redirect size ({self.big_bytes} bytes) byte for byte", self.big)
        self.check("cancel with partial results", self.cancel)
        self.out(f"smoke: {'FAILED: ' + ', '.join(self.failures) if self.failures else 'all checks passed'}"
                 f" against {self.base_url}")
        return 1 if self.failures else 0

    def error_envelope(self) -> str:
        answer = httpx.post(f"{self.base_url}/batches", headers={"Authorization": f"Bearer {self.api_key}"},
                            json={"input_file_id": "file-smoke", "endpoint": "/v1/nope", "completion_window": "24h"},
                            timeout=60)
        _expect(answer.status_code == 400, f"POST /batches with a bad endpoint answered {answer.status_code}, "
                                           f"expected 400: {answer.text[:200]}")
        err = answer.json().get("error")
        _expect(isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err),
                f"400 body is not an OpenAI error envelope: {answer.text[:200]}")
        unauth = httpx.get(f"{self.base_url}/batches", headers={"Authorization": "Bearer sk-not-a-key"}, timeout=60)
        _expect(unauth.status_code == 401 and "error" in unauth.json(),
                f"a wrong key answered {unauth.status_code}: {unauth.text[:200]}")
        return f"400 {err.get('code')}, 401 for a wrong key"

    def foreign_ids(self) -> str:
        batch_id, file_id = "batch_" + secrets.token_hex(16), "file-" + secrets.token_hex(12)
        for what, call in (("batch", lambda: self.client.batches.retrieve(batch_id)),
                           ("file", lambda: self.client.files.retrieve(file_id))):
            try:
                call()
            except openai.NotFoundError:
                continue
            raise CheckFailed(f"retrieving a random {what} id did not answer 404")
        return "batch and file"

    def download(self, file_id: str, expected: bytes) -> str:
        got = self.client.files.content(file_id).read()
        _expect(got == expected, f"downloaded {len(got)} bytes, differing from the {len(expected)} uploaded")
        return f"{len(got)} bytes"

    def batch_to_completion(self, file_id: str, endpoint: str, n: int) -> str:
        batch = self.client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h")
        batch = self.wait(batch.id)
        counts = batch.request_counts
        _expect(batch.status == "completed", f"batch {batch.id} ended {batch.status}: {batch.errors}")
        _expect(counts.total == n and counts.completed == n,
                f"batch {batch.id}: {counts.completed} of {counts.total} completed, {counts.failed} failed"
                + (f"; first error: {self._first_error(batch)}" if batch.error_file_id else ""))
        lines = [json.loads(x) for x in self.client.files.content(batch.output_file_id).read().splitlines()]
        _expect(len(lines) == n and all(x["response"]["status_code"] == 200 for x in lines),
                f"batch {batch.id}: the output file does not hold {n} answers of status 200")
        return batch.id

    def _first_error(self, batch) -> str:
        first = self.client.files.content(batch.error_file_id).read().splitlines()[:1]
        return first[0].decode(errors="replace")[:300] if first else "(empty error file)"

    def embeddings(self) -> str:
        data = _lines("/v1/embeddings", self.embedding_model, 2, "emb")
        return self.batch_to_completion(self.upload(data, "smoke-emb.jsonl"), "/v1/embeddings", 2)

    def big(self) -> str:
        line = _lines("/v1/chat/completions", self.chat_model, 1, "big", pad=2000)
        data = line * (self.big_bytes // len(line) + 1)
        upload = self.client.uploads.upload_file_chunked(
            file=data, filename="smoke-big.jsonl", bytes=len(data), mime_type="application/jsonl",
            purpose="batch", part_size=self.part_bytes)
        _expect(upload.status == "completed" and upload.file, f"upload ended {upload.status}")
        file_id = upload.file.id
        raw = httpx.get(f"{self.base_url}/files/{file_id}/content", headers={
            "Authorization": f"Bearer {self.api_key}"}, follow_redirects=False, timeout=120)
        _expect(raw.status_code == 302 and raw.headers.get("location"),
                f"{len(data)} bytes answered {raw.status_code}, not a 302 redirect")
        _expect(raw.json().get("url") == raw.headers["location"], "the 302's JSON body does not name the URL")
        return self.download(file_id, data) + ", by redirect"

    def cancel(self) -> str:
        n = 40
        data = _lines("/v1/chat/completions", self.chat_model, n, "cancel")
        if self.cancel_line_marker:
            lines = data.splitlines(keepends=True)
            data = b"".join(line.replace(b"(batchgate smoke", self.cancel_line_marker.format(ms=500 * (i + 1))
                                         .encode() + b" (batchgate smoke")
                            for i, line in enumerate(lines))
        batch = self.client.batches.create(input_file_id=self.upload(data, "smoke-cancel.jsonl"),
                                           endpoint="/v1/chat/completions", completion_window="24h")
        # Cancel once lines are being sent: workers look at the status every few seconds, stop, and
        # commit the answers they have, so the cancelled batch keeps them.
        batch = self.wait(batch.id, lambda b: b.status in TERMINAL or b.status == "in_progress")
        _expect(batch.status not in TERMINAL, f"batch {batch.id} ended {batch.status} before it could be "
                                              "cancelled (use a slower model, or more lines)")
        # in_progress comes before the chunks reach a worker: give the first lines time to be answered.
        time.sleep(self.cancel_after_seconds)
        self.client.batches.cancel(batch.id)
        batch = self.wait(batch.id)
        counts = batch.request_counts
        _expect(batch.status == "cancelled", f"batch {batch.id} ended {batch.status}, expected cancelled")
        _expect(counts.completed > 0 and batch.output_file_id,
                f"batch {batch.id} was cancelled without the answers it already had")
        out = self.client.files.content(batch.output_file_id).read().splitlines()
        _expect(len(out) == counts.completed,
                f"output file has {len(out)} lines, request_counts.completed is {counts.completed}")
        return f"{counts.completed} of {n} answered before the cancel"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", required=True, help="the API URL, ending in /v1 (the ApiUrl output)")
    parser.add_argument("--api-key", required=True, help="a key made with `batchgate keys create`")
    parser.add_argument("--chat-model", default="gpt-4o-mini")
    parser.add_argument("--embedding-model", default="text-embedding-3-small")
    parser.add_argument("--big-bytes", type=int, default=DEFAULT_BIG_BYTES,
                        help="size of the file that must come back by redirect (above content_redirect_bytes)")
    parser.add_argument("--part-bytes", type=int, default=DEFAULT_PART_BYTES,
                        help="upload part size (at most the server's max_direct_upload_bytes)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each batch may take")


def run(args: argparse.Namespace) -> int:
    return Smoke(base_url=args.base_url, api_key=args.api_key, chat_model=args.chat_model,
                 embedding_model=args.embedding_model, big_bytes=args.big_bytes, part_bytes=args.part_bytes,
                 timeout=args.timeout, out=lambda line: print(line, flush=True)).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchgate smoke", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
