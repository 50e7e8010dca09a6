"""The front door: the HTTP server in front of the gateway (gateway.py). It frames requests (Content-Length
or chunked), refuses bad framing, bodies over API Gateway's 10 MB and bodies that stop arriving, in
OpenAI's error envelope, and writes the gateway's answers back."""
from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from batchgate.observability import logger
from batchgate_local.apigw.gateway import API_GATEWAY_MAX_BODY, Answer, Gateway, envelope, hint
from batchgate_local.apigw.routes import ApiModel
from batchgate_local.lambdas import InProcessLambdas


class FrontDoor:
    """The gateway served over HTTP at host:port (port 0: an ephemeral one, told by `port`)."""

    def __init__(self, api: ApiModel, lambdas: InProcessLambdas, host: str = "127.0.0.1", port: int = 0,
                 stage: str = "local", account: str = "123456789012", region: str = "us-east-1",
                 read_timeout: float = 30.0):
        self.gateway = Gateway(api, lambdas, stage=stage, account=account, region=region)
        handler = type("Handler", (_Handler,), {"gateway": self.gateway, "timeout": read_timeout})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def handle(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        return self.gateway.handle(method, raw_path, headers, body)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="batchgate-front-door",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(timeout=5)


class _Refused(Exception):
    """A request the front door answers itself, before any route: bad framing, too big, too slow."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


_DIGITS = re.compile(rb"[0-9]{1,20}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _Handler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's httpx client expects
    server_version = "batchgate-local"
    timeout = 30.0  # a client that stops sending mid-request frees its thread (the socket's timeout)

    def _read_body(self) -> bytes:
        """The body, framed by Content-Length or chunked encoding, refused as API Gateway would
        refuse it: bad framing is a 400 and a body over 10 MB a 413, decided before reading it."""
        limit = API_GATEWAY_MAX_BODY
        too_large = _Refused(413, f"Request body too large: the limit is 10 MB per request. {hint(self.path)}",
                             "request_too_large")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        lengths = self.headers.get_all("Content-Length") or []
        if chunked and lengths:
            raise _Refused(400, "A request may not carry both Content-Length and Transfer-Encoding.")
        if chunked:
            chunks, total = [], 0
            while True:
                size_field = self.rfile.readline(1024).split(b";")[0].strip()
                if not _HEX.fullmatch(size_field):
                    raise _Refused(400, "Invalid chunk size in a chunked request body.")
                size = int(size_field, 16)
                if size == 0:
                    while self.rfile.readline(8192).strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise too_large
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise _Refused(400, "The request body ended before its declared size.")
                chunks.append(chunk)
                self.rfile.readline(1024)
        if len(set(lengths)) > 1 or any(not _DIGITS.fullmatch(v.strip().encode()) for v in lengths):
            raise _Refused(400, "Invalid Content-Length header.")
        length = int(lengths[0]) if lengths else 0
        if length > limit:
            raise too_large
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise _Refused(400, "The request body ended before its Content-Length.")
        return body

    def _serve(self) -> None:
        try:
            body = self._read_body()
            status, headers, payload = self.gateway.handle(self.command, self.path, list(self.headers.items()),
                                                              body)
        except _Refused as refused:
            # The rest of the body (if any) was not read: the connection cannot carry another request.
            return self._answer_refusal(refused.status, str(refused), refused.code)
        except TimeoutError:
            return self._answer_refusal(408, "The request body did not arrive in time.", "request_timeout")
        except Exception:  # a bug here must not hang the client
            logger.exception("local front door failed")
            status, headers = 500, [("Content-Type", "application/json")]
            payload = json.dumps(envelope("Local front door error", type_="server_error")).encode()
        self._send(status, headers, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting; nothing to tell it
            self.close_connection = True

    def _answer_refusal(self, status: int, message: str, code: str | None = None) -> None:
        self.close_connection = True
        request_id = f"req_{uuid.uuid4().hex}"
        body = json.dumps(envelope(message, code=code)).encode()
        self._send(status, [("Content-Type", "application/json"), ("x-request-id", request_id)], body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line over 64 KB: 414, a header line over 64 KB or
        more than 100 headers: 431, a malformed request line: 400) in OpenAI's error envelope instead
        of HTML. A malformed HTTP version is a 400, as the AWS edge answers it, not a 505."""
        text = {414: "Request URI too long.", 431: "Request header fields too large."}.get(
            code, f"Bad request: {message or 'the request could not be parsed'}.")
        if not getattr(self, "command", None):
            self.command = "GET"  # http.server had not parsed one; any value but HEAD sends the body
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.1"  # a status line and headers, whatever the client sent
        self._answer_refusal(code if 400 <= code < 500 else 400, text)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str):
        # Any other method (TRACE, QUERY, ...) reaches the route table too, as on API Gateway, which
        # answers a method it has no route for as an unknown route (404), not with http.server's 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the SDK user sees the answers
        logger.debug("front door: " + format, *args)
