"""The built-in development upstream: a stand-in for a real model server, NOT a model.

A small stdlib HTTP server that answers OpenAI-compatible POSTs with deterministic, realistic bodies
(ids, `usage` blocks whose token counts follow the input length, an `x-request-id` header). Content
says plainly that it comes from "[batchgate dev upstream]". Used by local mode when no upstream URL is
configured, and by the tests.

Fault injection (markers anywhere in the request body, so batch lines can carry them):
  __fail_429_once__      429 with `Retry-After: 1` the first time this exact body is seen
  __fail_429_ms_once__   429 with `retry-after-ms: 50` the first time this exact body is seen
  __fail_500_once__      500 the first time this exact body is seen
  __fail_500__           500 every time
  __fail_400__           400 with an OpenAI error body every time
  __sleep_ms:N__         wait N milliseconds before answering
Hostile answers (what a misbehaving upstream may send; the fault sweep schedules them):
  __echo_raw__           200 whose JSON body is the request body exactly as received
  __usage_huge__         usage counts of 2**64-1        __usage_negative__   usage counts of -5
  __set_cookie__         a Set-Cookie header (every request's Cookie header is kept in `cookies`)
  __redirect__           302 to the cloud metadata address
  __not_json__           200 with a text/plain body     __huge_answer__      200 with a ~10 MB JSON body
  __deep_answer__        200 whose JSON nests 2,000 levels (more than JSON decoders accept)
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from batchgate.contract import error_envelope

NAME = "[batchgate dev upstream]"
_SLEEP = re.compile(rb"__sleep_ms:(\d+)__")
# A 1x1 transparent PNG: enough for an image-shaped answer.
_PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _text_of(value) -> str:
    """All the text a request carries (messages, prompt, input...), for token counts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return " ".join(_text_of(v) for k, v in value.items() if k in ("content", "text", "input", "prompt",
                                                                        "messages", "instructions"))
    return ""


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _reply_text(prompt: str) -> str:
    head = " ".join(prompt.split()[:12])
    return f"{NAME} This is a deterministic stand-in answer to: {head}"


def _chat_usage(p: int, c: int, body: dict) -> dict:
    reasoning = 16 if body.get("reasoning_effort") or body.get("reasoning") else 0
    cached = (p // 128) * 64 if p >= 1024 else 0
    return {"prompt_tokens": p, "completion_tokens": c + reasoning, "total_tokens": p + c + reasoning,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def answer(path: str, body: dict, rid: str) -> dict:
    """The response body for one endpoint (deterministic in the request)."""
    model = body.get("model") or "dev-model"
    now = int(time.time())
    if path == "/v1/chat/completions":
        prompt = _text_of(body.get("messages"))
        text = _reply_text(prompt)
        return {"id": f"chatcmpl-{rid[:24]}", "object": "chat.completion", "created": now, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": _chat_usage(_tokens(prompt), _tokens(text), body),
                "system_fingerprint": "batchgate-dev", "service_tier": "default"}
    if path == "/v1/completions":
        prompt = _text_of(body.get("prompt"))
        text = _reply_text(prompt)
        return {"id": f"cmpl-{rid[:24]}", "object": "text_completion", "created": now, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                "usage": _chat_usage(_tokens(prompt), _tokens(text), body)}
    if path == "/v1/embeddings":
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
        dims = int(body.get("dimensions") or 8)
        data, tokens = [], 0
        for i, item in enumerate(items):
            text = json.dumps(item)
            tokens += _tokens(_text_of(item) or text)
            seed = hashlib.sha256(text.encode()).digest()
            vec = [round((seed[j % 32] - 128) / 128, 6) for j in range(dims)]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    if path == "/v1/responses":
        prompt = _text_of(body.get("input")) + " " + _text_of(body.get("instructions"))
        text = _reply_text(prompt)
        p, c = _tokens(prompt), _tokens(text)
        reasoning = 16 if body.get("reasoning") else 0
        return {"id": f"resp_{rid[:32]}", "object": "response", "created_at": now, "status": "completed",
                "model": model, "output": [{"type": "message", "id": f"msg_{rid[:32]}", "status": "completed",
                                            "role": "assistant",
                                            "content": [{"type": "output_text", "text": text,
                                                         "annotations": []}]}],
                "usage": {"input_tokens": p, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": c + reasoning,
                          "output_tokens_details": {"reasoning_tokens": reasoning},
                          "total_tokens": p + c + reasoning}}
    if path == "/v1/moderations":
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        cats = ("harassment", "hate", "self-harm", "sexual", "violence")
        return {"id": f"modr-{rid[:24]}", "model": body.get("model") or "omni-moderation-latest",
                "results": [{"flagged": False, "categories": {c: False for c in cats},
                             "category_scores": {c: 0.0001 for c in cats}} for _ in items]}
    if path in ("/v1/images/generations", "/v1/images/edits"):
        prompt = _text_of(body.get("prompt"))
        n = int(body.get("n") or 1)
        p = _tokens(prompt)
        return {"created": now, "data": [{"b64_json": _PNG, "revised_prompt": f"{NAME} {prompt}"}] * n,
                "usage": {"input_tokens": p, "input_tokens_details": {"text_tokens": p, "image_tokens": 0},
                          "output_tokens": 272 * n, "total_tokens": p + 272 * n}}
    if path == "/v1/videos":
        return {"id": f"video_{rid[:32]}", "object": "video", "model": body.get("model") or "sora-2",
                "status": "completed", "progress": 100, "created_at": now, "completed_at": now,
                "expires_at": now + 86400, "prompt": body.get("prompt"),
                "seconds": str(body.get("seconds") or "4"), "size": body.get("size") or "720x1280",
                "error": None, "remixed_from_video_id": None}
    raise KeyError(path)


class DevUpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address):
        super().__init__(address, _Handler)
        self.lock = threading.Lock()
        self.seen: set[str] = set()     # bodies that already used their one-off failure
        self.calls: list[tuple[str, str]] = []   # (path, sha256 of the body), for tests
        self.cookies: list[str] = []             # Cookie headers received (there should be none)

    def first_time(self, marker: bytes, raw: bytes) -> bool:
        key = marker.decode() + _digest(raw)
        with self.lock:
            if key in self.seen:
                return False
            self.seen.add(key)
            return True

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        # Workers hang up on in-flight requests when a batch is cancelled or expires: not an error
        # worth a traceback on local mode's stderr for each of them.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DevUpstreamServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict | bytes, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, type_: str, code: str | None, rid: str,
               headers: dict | None = None) -> None:
        self._send(status, error_envelope(message, type=type_, code=code),
                   {"x-request-id": rid, **(headers or {})})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        rid = "req_" + hashlib.sha256(raw + str(time.time_ns()).encode()).hexdigest()[:32]
        with self.server.lock:
            self.server.calls.append((self.path, _digest(raw)))
            if self.headers.get("cookie") is not None:
                self.server.cookies.append(self.headers["cookie"])
        if m := _SLEEP.search(raw):
            time.sleep(int(m.group(1)) / 1000)
        if b"__fail_400__" in raw:
            return self._error(400, f"{NAME} injected failure: this request is invalid.",
                               "invalid_request_error", "invalid_value", rid)
        if b"__fail_500__" in raw or (b"__fail_500_once__" in raw and self.server.first_time(b"500", raw)):
            return self._error(500, f"{NAME} injected server error.", "server_error", None, rid)
        if b"__fail_429_once__" in raw and self.server.first_time(b"429", raw):
            return self._error(429, f"{NAME} injected rate limit.", "rate_limit_error", "rate_limit_exceeded",
                               rid, {"retry-after": "1"})
        if b"__fail_429_ms_once__" in raw and self.server.first_time(b"429ms", raw):
            return self._error(429, f"{NAME} injected rate limit.", "rate_limit_error", "rate_limit_exceeded",
                               rid, {"retry-after-ms": "50"})
        if hostile := self._hostile(raw, rid):
            return hostile()
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            return self._error(400, "We could not parse the JSON body of your request.",
                               "invalid_request_error", None, rid)
        path = self.path.split("?", 1)[0]
        try:
            result = answer(path, body, rid[4:])
        except KeyError:
            return self._error(404, f"Invalid URL (POST {path})", "invalid_request_error", "unknown_url", rid)
        if b"__usage_huge__" in raw or b"__usage_negative__" in raw:
            n = 2**64 - 1 if b"__usage_huge__" in raw else -5
            usage = result.get("usage") or {"prompt_tokens": 0, "total_tokens": 0}
            result["usage"] = {k: n if isinstance(v, int) else v for k, v in usage.items()}
        headers = {"x-request-id": rid}
        if b"__set_cookie__" in raw:
            headers["set-cookie"] = f"session={rid}; Path=/"
        self._send(200, result, headers)

    def _hostile(self, raw: bytes, rid: str):
        """The answer for a hostile marker that needs no parsed body, or None."""
        headers = {"x-request-id": rid}
        if b"__echo_raw__" in raw:
            return lambda: self._send(200, raw, headers)
        if b"__redirect__" in raw:
            return lambda: self._send(302, b"", {**headers, "location": "http://169.254.169.254/latest/"})
        if b"__not_json__" in raw:
            return lambda: self._send(200, f"{NAME} this is not JSON".encode(), headers, "text/plain")
        if b"__huge_answer__" in raw:
            return lambda: self._send(200, b'{"filler":"' + b"x" * (10 * 2**20) + b'"}', headers)
        if b"__deep_answer__" in raw:
            return lambda: self._send(200, b"[" * 2000 + b"]" * 2000, headers)
        return None


def start_dev_upstream(host: str = "127.0.0.1", port: int = 0) -> tuple[DevUpstreamServer, str]:
    """Start in a daemon thread. Returns (server, base_url ending in /v1); stop with server.shutdown()."""
    server = DevUpstreamServer((host, port))
    threading.Thread(target=server.serve_forever, name="dev-upstream", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/v1"
