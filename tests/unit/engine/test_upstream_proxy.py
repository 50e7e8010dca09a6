"""The worker's pool takes its proxy from the environment (HTTP_PROXY/HTTPS_PROXY, NO_PROXY) once, as
httpx's default did, and never reads a netrc file: aiohttp's trust_env did both on a thread for every
request. A loopback "proxy" this module starts and stops answers requests sent to it in absolute form."""
from __future__ import annotations

import asyncio
import http.server
import threading

import orjson
import pytest

from batchgate.adapters.upstream import UpstreamClient
from batchgate.contract import UpstreamSettings
from batchgate.domain.ports import UpstreamAnswer, UpstreamFailure

UPSTREAM = "http://upstream.invalid/v1"   # resolvable only through the proxy


class _Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.targets: list[str] = []
        self.authorization: list[str | None] = []


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.targets.append(self.path)   # absolute form: the upstream's URL
        self.server.authorization.append(self.headers.get("authorization"))
        body = orjson.dumps({"object": "chat.completion", "via": "proxy"})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy(monkeypatch, tmp_path):
    server = _Proxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    # a netrc entry for the upstream's host must not reach it
    (tmp_path / ".netrc").write_text("machine upstream.invalid login leaked password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _post() -> UpstreamAnswer | UpstreamFailure | None:
    settings = UpstreamSettings(base_url=UPSTREAM, concurrency=2, max_attempts=1, timeout_seconds=10,
                                connect_timeout_seconds=2)

    async def go():
        async with UpstreamClient(settings, None, name="behind-proxy") as client:
            return await client.post("/v1/chat/completions", b'{"model":"m","messages":[]}')
    return asyncio.run(go())


def test_requests_go_through_the_environments_proxy_without_netrc_credentials(proxy):
    answer = _post()
    assert isinstance(answer, UpstreamAnswer) and answer.status_code == 200, answer
    assert answer.body["via"] == "proxy"
    assert proxy.targets == ["http://upstream.invalid/v1/chat/completions"]
    assert proxy.authorization == [None]   # no key configured, and the netrc entry is not read


def test_no_proxy_sends_the_upstream_direct(proxy, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "upstream.invalid")
    answer = _post()
    assert isinstance(answer, UpstreamFailure) and answer.code == "upstream_error", answer
    assert proxy.targets == []
