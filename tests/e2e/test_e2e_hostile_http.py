"""Hostile HTTP over the wire (issue 9): thousands of requests against local mode's front door, on
every route, from both tenants, without a key and with bad ones, with malformed bodies, headers, ids
and query strings. Every answer is below 500, every 4xx is OpenAI's error envelope, and the other
tenant's objects are exactly as they were afterwards.

`HOSTILE_HTTP_REQUESTS=N` changes the count (default 10,000); the test prints what it sent.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import random
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

import pytest
from support.sdk import wait_for_batch

from .conftest import KEY_A, KEY_B, REPORT, make_batch_lines

pytestmark = pytest.mark.e2e

REQUESTS = int(os.environ.get("HOSTILE_HTTP_REQUESTS", "10000"))
WORKERS = 4

ROUTES = [  # (method, path template); {id} is filled with an id of the route's kind
    ("GET", "/files"), ("POST", "/files"), ("GET", "/files/{file}"), ("DELETE", "/files/{file}"),
    ("GET", "/files/{file}/content"), ("POST", "/uploads"), ("POST", "/uploads/{upload}/parts"),
    ("POST", "/uploads/{upload}/complete"), ("POST", "/uploads/{upload}/cancel"), ("GET", "/batches"),
    ("POST", "/batches"), ("GET", "/batches/{batch}"), ("POST", "/batches/{batch}/cancel"),
    ("GET", "/openapi.json"),
]
ODD_ROUTES = [("PUT", "/files"), ("PATCH", "/batches/{batch}"), ("GET", "/nope"), ("POST", "/files/{file}/content"),
              ("TRACE", "/batches"), ("GET", "/"), ("GET", "/files/{file}/content/x"), ("OPTIONS", "/files")]

GARBAGE_IDS = ["", "x", "file-", "batch_", "upload_", "file-" + "A" * 24, "batch_" + "0" * 32,
               "upload_" + "f" * 32, "../../etc/passwd", "%2e%2e%2f", "%00", "a" * 3000, "\u00e9t\u00e9",
               "\U0001F600" * 20, "file-abc%0d%0aSet-Cookie:x", "batch_1 OR 1=1", "{file_id}", "null", "-1",
               "%ff%fe", "file-AAAAAAAAAAAAAAAAAAAAAAAA/../x", ";", "%"]

QUERIES = ["", "limit=0", "limit=-1", "limit=abc", "limit=10001", "limit=1e3", "limit=1&limit=2", "after=",
           "after=batch_x", "after=" + "a" * 5000, "order=sideways", "order=asc", "purpose=vision",
           "purpose=" + "p" * 1000, "%zz=1", "a=%", "limit=%00", "limit=\u0661", "after=file-AAAAAAAAAAAAAAAAAAAAAAAA",
           "limit=5&after=%F0%9F%98%80", "&&&", "=x", "limit=2147483648", "limit=  3"]


def _json_bodies(rng: random.Random, ids: dict) -> list:
    value = rng.choice([None, True, 0, -1, 1.5, 2**70, "", "x" * rng.choice([1, 100, 70_000]), [], {}, [1, "a"],
                        {"a": {"b": [None]}}])
    field = rng.choice(["input_file_id", "endpoint", "completion_window", "metadata", "filename", "purpose",
                        "bytes", "mime_type", "part_ids", "md5", "output_expires_after", "expires_after", "x"])
    good_batch = {"input_file_id": rng.choice([ids["file_a"], "file-" + "B" * 24]), "endpoint": "/v1/chat/completions",
                  "completion_window": "24h"}
    good_upload = {"filename": "u.jsonl", "purpose": "batch", "bytes": 10, "mime_type": "application/jsonl"}
    return [value, {field: value}, {**good_batch, field: value}, {**good_upload, field: value},
            {"part_ids": [ids["part_a"], value]}, {"metadata": {str(value)[:70]: value}}]


def _multipart(rng: random.Random) -> tuple[bytes, str]:
    boundary = rng.choice(["b", "x" * 70, "--", "a b", "\u00e9"])
    parts = []
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(["file", "purpose", "data", "", "file\"; x=\"y"])
        filename = rng.choice([None, "a.jsonl", "../x.jsonl", "x" * 1500, "\u0000.jsonl", "a.txt"])
        data = rng.choice([b"batch", b"user_data", make_batch_lines(1), b"\x00\xff" * 50, b"{", b""])
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("utf-8", "replace")
                     + data + b"\r\n")
    tail = rng.choice([f"--{boundary}--\r\n".encode(), b"", b"--wrong--\r\n"])
    ctype = rng.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                        "multipart/form-data; boundary=", "application/json", "text/plain"])
    return b"".join(parts) + tail, ctype


def _request(rng: random.Random, ids: dict) -> tuple[str, str, dict, bytes, str]:
    """(method, path, headers, body, who) of one hostile request."""
    method, template = rng.choice(ROUTES * 3 + ODD_ROUTES)
    who = rng.choice(["a", "b", "b", "none", "bad"])
    kind = template.split("{")[1].split("}")[0] if "{" in template else None
    if kind:
        # Tenant A's real ids go only to everyone but A (so A's objects must survive untouched).
        real = ids[f"{kind}_a"]
        raw_id = real if who != "a" and rng.random() < 0.5 else rng.choice(GARBAGE_IDS)
        template = template.replace("{" + kind + "}", quote(raw_id, safe=rng.choice(["%/", "/", "", "%/;:@!$'()*+,="])))
    path = "/v1" + template
    query = rng.choice(QUERIES)
    if query:
        path += "?" + quote(query, safe="=&%")
    headers: dict[str, str] = {}
    if who in ("a", "b"):
        headers["Authorization"] = "Bearer " + (KEY_A if who == "a" else KEY_B)
    elif who == "bad":
        headers["Authorization"] = rng.choice(["Bearer", "Bearer " + "k" * 500, "Basic YTpi", "bearer  sk-e2e",
                                               "Bearer sk-e2e-tenant-ab", "Bearer \u00e9", "Bearer sk-e2e-tenant-a,x"])
    body = b""
    shape = rng.random()
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        if shape < 0.45:
            body = json.dumps(rng.choice(_json_bodies(rng, ids))).encode()
            headers["Content-Type"] = rng.choice(["application/json", "application/json; charset=utf-8",
                                                  "text/plain", "application/x-www-form-urlencoded"])
        elif shape < 0.75:
            body, headers["Content-Type"] = _multipart(rng)
        elif shape < 0.9:
            body = rng.choice([b"{", b"[1,", b"\xff\xfe\x00", b'{"a":' * 2000, b"null", b'"\\ud800"',
                               b'{"input_file_id": "\\u0000"}', bytes(rng.randrange(256) for _ in range(200))])
            headers["Content-Type"] = rng.choice(["application/json", "application/octet-stream", ""])
    if rng.random() < 0.3:
        headers[rng.choice(["Accept", "X-Forwarded-For", "User-Agent", "OpenAI-Beta", "Idempotency-Key",
                            "X-Amzn-Trace-Id", "Cookie"])] = rng.choice(["*/*", "a" * 4000, "\u00e9", "", "text/html",
                                                                        "1.2.3.4, 5.6.7.8", "x=y; z"])
    return method, path, headers, body, who


class _Client:
    """One keep-alive connection per worker thread, re-opened when the server closes it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
                for k, v in headers.items():
                    self.conn.putheader(k, v.encode("utf-8"))
                self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                resp = self.conn.getresponse()
                data = resp.read()
                answer = resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _problem(status: int, headers: dict, body: bytes) -> str | None:
    if status >= 500:
        return f"{status}: {body[:200]!r}"
    if 400 <= status < 500:
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return f"{status} without the envelope: {body[:200]!r}"
        if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"} \
                or not isinstance(error["message"], str) or not error["message"]:
            return f"{status} with a malformed envelope: {body[:200]!r}"
    return None


@pytest.fixture(scope="module")
def tenant_a_objects(client_a):
    file = client_a.files.create(file=("a.jsonl", io.BytesIO(make_batch_lines(3)), "application/jsonl"),
                                 purpose="batch")
    batch = wait_for_batch(client_a, client_a.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h").id)
    upload = client_a.uploads.create(bytes=10, filename="a.jsonl", mime_type="application/jsonl", purpose="batch")
    part = client_a.uploads.parts.create(upload_id=upload.id, data=b"0123456789")
    return {"file_a": file.id, "batch_a": batch.id, "upload_a": upload.id, "part_a": part.id,
            "content_a": client_a.files.content(file.id).read(), "batch_status": batch.status}


def test_ten_thousand_hostile_requests_answer_below_500_in_the_envelope(local_service, client_a, tenant_a_objects):
    url = urlsplit(local_service.base_url)
    ids = tenant_a_objects
    plan = [_request(random.Random(seed), ids) for seed in range(REQUESTS)]
    local = threading.local()
    statuses: Counter = Counter()
    problems: list[str] = []
    lock = threading.Lock()

    def send(request):
        method, path, headers, body, who = request
        if not hasattr(local, "client"):
            local.client = _Client(url.hostname, url.port)
        status, answer_headers, answer = local.client.send(method, path, headers, body)
        problem = _problem(status, answer_headers, answer)
        with lock:
            statuses[status] += 1
            if problem:
                problems.append(f"{method} {path[:120]} ({who}): {problem}")

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(send, plan))
    raw = _malformed_framing(url.hostname, url.port)
    for status, body in raw:
        statuses[status] += 1
        if problem := _problem(status, {}, body):
            problems.append(f"raw framing: {problem}")

    sent = sum(statuses.values())
    REPORT.append(f"hostile HTTP: {sent} requests over {len(ROUTES) + len(ODD_ROUTES)} routes, "
                  f"{sum(n for s, n in statuses.items() if s >= 500)} answers of 5xx, {len(problems)} problems; "
                  f"statuses {dict(sorted(statuses.items()))}")
    print(REPORT[-1])
    assert sent >= REQUESTS and not problems, "\n".join(problems[:30])

    # Tenant A's objects, which only others addressed by id, are exactly as they were
    assert client_a.files.content(ids["file_a"]).read() == tenant_a_objects["content_a"]
    assert client_a.batches.retrieve(ids["batch_a"]).status == tenant_a_objects["batch_status"]
    completed = client_a.uploads.complete(upload_id=ids["upload_a"], part_ids=[ids["part_a"]])
    assert completed.status == "completed" and completed.file is not None


def _malformed_framing(host: str, port: int) -> list[tuple[int, bytes]]:
    """Requests no HTTP library would send: each on its own connection, answered and closed."""
    auth = f"Authorization: Bearer {KEY_A}\r\n"
    requests = [
        f"POST /v1/files HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: abc\r\n\r\n".encode(),
        f"POST /v1/files HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: -5\r\n\r\n".encode(),
        f"POST /v1/batches HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode(),
        (f"POST /v1/batches HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 3\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode(),
        f"POST /v1/files HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode(),
        b"GET /v1/" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET /v1/files HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /v1/files HTTP/7.0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",   # a TLS hello to the plain-HTTP port
    ]
    answers = []
    for request in requests:
        with socket.create_connection((host, port), timeout=60) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        answers.append((int(head.split(b" ")[1]), body))
    return answers
