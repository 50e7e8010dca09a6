"""The cap on an upstream answer's size (UpstreamSettings.max_answer_bytes), against a hostile server on
127.0.0.1 that this module starts and stops: a Content-Length over the cap is refused before the body,
an endless chunked body (or a gzip bomb) is cut at the cap, an answer at the cap is kept, memory does
not grow with the body, and a connection cut mid-body never goes back to the pool."""
from __future__ import annotations

import asyncio
import socketserver
import threading
import tracemalloc
import zlib

import httpx
import orjson
import pytest

from batchgate.adapters.upstream import UpstreamClient
from batchgate.contract import UpstreamSettings
from batchgate.domain.ports import UpstreamAnswer, UpstreamFailure

MIB = 1024 * 1024
CAP = 256 * 1024
PIECE = b"x" * 65536   # what the server writes each time: allocated once, so it adds nothing traced


def _gzip_bomb(megabytes: int) -> bytes:
    """`megabytes` MB of zeros, gzip-compressed: ~50 KB on the wire for 50 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    return b"".join([*(packer.compress(zeros) for _ in range(megabytes)), packer.flush()])


GZIP_BOMB = _gzip_bomb(50)


class _Server(socketserver.ThreadingTCPServer):
    """An upstream that answers by path. Counts requests per path and connections, and sets
    `client_closed` when a client hangs up on an answer the server had not finished."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.connections = 0
        self.client_closed = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        try:
            while self._one():   # keep-alive: answer requests until the client closes
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.server.client_closed.set()

    def _one(self) -> bool:
        request_line = self.rfile.readline()
        if not request_line:
            return False
        length = 0
        while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self.rfile.read(length)
        path = request_line.split()[1].decode()
        with self.server.lock:
            self.server.requests[path] = self.server.requests.get(path, 0) + 1
        return getattr(self, "_" + path.rsplit("/", 1)[-1].split("?")[0])(path)

    def _head(self, extra: str) -> None:
        self.wfile.write(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_t\r\n"
                         f"{extra}\r\n".encode())

    def _ok(self, path: str) -> bool:
        body = b'{"ok":true}'
        self._head(f"content-length: {len(body)}\r\n")
        self.wfile.write(body)
        return True

    def _declared(self, path: str) -> bool:
        """Declares 50 MB, sends one piece, then waits for the client: one that read on would stall."""
        self._head(f"content-length: {50 * MIB}\r\n")
        self.wfile.write(PIECE)
        self.wfile.flush()
        if self.rfile.read(1) == b"":   # the client closed the connection instead of reading on
            self.server.client_closed.set()
        return False

    def _exactly(self, path: str) -> bool:
        """A JSON body of exactly CAP bytes (with Content-Length, or chunked when ?chunked)."""
        body = b'{"filler":"' + b"y" * (CAP - 14) + b'"}'
        assert len(body) == CAP - 1
        body += b"\n"
        if path.endswith("?chunked"):
            self._head("transfer-encoding: chunked\r\n")
            for i in range(0, len(body), 50_000):
                part = body[i:i + 50_000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._head(f"content-length: {len(body)}\r\n")
            self.wfile.write(body)
        return True

    def _endless(self, path: str) -> bool:
        """A chunked body that never ends: only the client hanging up stops it."""
        self._head("transfer-encoding: chunked\r\n")
        chunk = b"%x\r\n%s\r\n" % (len(PIECE), PIECE)
        while True:
            self.wfile.write(chunk)

    def _gzip(self, path: str) -> bool:
        """A small gzip body (its Content-Length under the cap) that decodes to 50 MB."""
        self._head(f"content-encoding: gzip\r\ncontent-length: {len(GZIP_BOMB)}\r\n")
        self.wfile.write(GZIP_BOMB)
        return True

    def _stream(self, path: str) -> bool:
        """A chunked body of ?N megabytes, then its end."""
        self._head("transfer-encoding: chunked\r\n")
        chunk = b"%x\r\n%s\r\n" % (len(PIECE), PIECE)
        for _ in range(int(path.split("?")[1]) * MIB // len(PIECE)):
            self.wfile.write(chunk)
        self.wfile.write(b"0\r\n\r\n")
        return True


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, name="hostile-upstream", daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def _settings(server: _Server, cap: int = CAP) -> UpstreamSettings:
    # A read that waited on the server would take timeout_seconds: far past anything these tests expect.
    return UpstreamSettings(base_url=server.base_url, max_answer_bytes=cap, max_attempts=3,
                            timeout_seconds=120, concurrency=4)


async def _post(client: UpstreamClient, path: str):
    return await client.post(f"/v1/{path}", b"{}")


def _too_large(answer) -> None:
    assert isinstance(answer, UpstreamFailure), answer
    assert answer.code == "response_too_large"
    assert f"{CAP:,}-byte cap" in answer.message and "upstream 'hostile'" in answer.message


def test_a_declared_content_length_over_the_cap_is_refused_unread_and_not_retried(server):
    async def go():
        async with UpstreamClient(_settings(server), None, name="hostile") as client:
            return await _post(client, "declared")

    answer = asyncio.run(go())
    _too_large(answer)
    assert f"declared {50 * MIB:,} bytes" in answer.message
    assert server.client_closed.wait(30)          # the connection was closed, not left to read on
    assert server.requests == {"/v1/declared": 1}  # deterministic: not retried


def test_an_endless_chunked_body_ends_at_the_cap_and_its_connection_is_not_reused(server):
    async def go():
        async with UpstreamClient(_settings(server), None, name="hostile") as client:
            endless = await _post(client, "endless")
            after = await _post(client, "ok")   # the same pool: must not get the cut connection back
            return endless, after

    endless, after = asyncio.run(go())
    _too_large(endless)
    assert "sent more bytes than that" in endless.message
    assert server.client_closed.wait(30)
    assert after == UpstreamAnswer(200, "req_t", {"ok": True}, b'{"ok":true}')
    assert server.connections == 2
    assert server.requests == {"/v1/endless": 1, "/v1/ok": 1}


@pytest.mark.parametrize("how", ["", "?chunked"])
def test_an_answer_of_exactly_the_cap_is_kept(server, how):
    async def go():
        async with UpstreamClient(_settings(server), None, name="hostile") as client:
            return await _post(client, "exactly" + how)

    answer = asyncio.run(go())
    assert isinstance(answer, UpstreamAnswer) and answer.status_code == 200
    assert len(answer.body["filler"]) == CAP - 14 and len(answer.raw_json) == CAP - 1


def _peak_reading(server: _Server, megabytes: int, cap: int, path: str = "stream") -> tuple[object, int]:
    """(answer, peak traced bytes) of one read of a `megabytes` stream on a warmed-up pool."""
    async def go():
        async with UpstreamClient(_settings(server, cap), None, name="hostile") as client:
            assert isinstance(await _post(client, "ok"), UpstreamAnswer)   # pool, parser, TLS context built
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            answer = await _post(client, f"{path}?{megabytes}")
            return answer, tracemalloc.get_traced_memory()[1] - base

    tracemalloc.start()
    try:
        return asyncio.run(go())
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_body(server):
    answer, peak = _peak_reading(server, 50, cap=MIB)
    assert isinstance(answer, UpstreamFailure) and answer.code == "response_too_large"
    assert peak < 3 * MIB, f"peak {peak:,} bytes reading a 50 MB answer with a 1 MiB cap"
    # The measure sees the body: under its cap, a whole 2 MB answer is held (and parsed, at ~12x).
    answer, peak = _peak_reading(server, 2, cap=4 * MIB)
    assert isinstance(answer, UpstreamAnswer) and isinstance(answer.body, str) and len(answer.body) == 2 * MIB
    assert peak > 2 * MIB


def test_a_compressed_body_is_capped_by_its_decoded_size(server):
    assert len(GZIP_BOMB) < CAP
    answer, peak = _peak_reading(server, 50, cap=MIB, path="gzip")
    assert isinstance(answer, UpstreamFailure) and answer.code == "response_too_large", answer
    assert "sent more bytes than that" in answer.message
    # aiohttp decodes in bounded steps as the stream is read: ~3.2 MB whether the bomb is 5, 50 or 200 MB
    assert peak < 5 * MIB, f"peak {peak:,} bytes decoding a 50 MB gzip answer with a 1 MiB cap"


def test_the_httpx_transport_has_the_same_cap():
    def handler(request: httpx.Request):
        if request.url.path.endswith("/declared"):
            return httpx.Response(200, content=b"z" * (CAP + 1))

        async def endless():
            while True:
                yield PIECE

        return httpx.Response(200, content=endless())

    async def go():
        settings = UpstreamSettings(base_url="http://up.test/v1", max_answer_bytes=CAP)
        async with UpstreamClient(settings, None, transport=httpx.MockTransport(handler), name="hostile") as c:
            return await _post(c, "declared"), await _post(c, "endless")

    declared, endless = asyncio.run(go())
    _too_large(declared)
    _too_large(endless)
    assert f"declared {CAP + 1:,} bytes" in declared.message


def test_the_cap_is_an_upstream_setting_with_a_bounded_default():
    settings = UpstreamSettings(base_url="http://x/v1")
    assert settings.max_answer_bytes == 128 * 1024
    for bad in (0, 1023, 64 * MIB + 1, "big"):
        with pytest.raises(ValueError):
            UpstreamSettings(base_url="http://x/v1", max_answer_bytes=bad)
    assert orjson.loads(settings.model_dump_json())["max_answer_bytes"] == 128 * 1024
