"""The front door: waitress (a pure-Python WSGI server) serves the gateway (gateway.py) over HTTP.

Waitress frames requests: Content-Length or chunked bodies, received whole before the gateway sees
them, spooled to a temporary file past 512 KB, refused when bad or over API Gateway's 10 MB quota
before they are read. Its I/O thread receives every connection's bytes, so a client that stalls
midway holds none of the worker threads. What it would answer in text, the front door answers as the
edge in front of API Gateway does, in OpenAI's error envelope; and it keeps the limits local mode has
always had (those of Python's http.server): a request line over 64 KB is a 414, a header line over
64 KB or more than 100 headers a 431, an HTTP version other than 1.0/1.1 a 400, a body that stops
arriving a 408 after `read_timeout`.

Three waitress classes are extended for that (waitress is pinned in pyproject.toml): the channel's
error task renders refusals, its parser lets chunk framing ride on top of the 10 MB quota, the
server's maintenance answers a stalled body with a 408 instead of closing the connection silently.
"""
from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import (
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    ServerNotImplemented,
)

from batchgate.observability import logger
from batchgate_local.apigw.gateway import API_GATEWAY_MAX_BODY, Answer, Gateway, refusal, too_large
from batchgate_local.apigw.routes import ApiModel
from batchgate_local.lambdas import InProcessLambdas

MAX_LINE = 65536                  # http.server's limits, kept: request line, one header line
MAX_HEADERS = 100
# API Gateway's quota counts the body; chunk framing rides on top of it (the gateway checks the
# decoded size). 1 MB covers the framing of any chunk size a client library uses.
CHUNK_FRAMING_ALLOWANCE = 1024 * 1024
WORKER_THREADS = 8                # requests served at once (each function still runs one at a time)
CONNECTION_LIMIT = 1000
# Hop-by-hop headers belong to one connection (PEP 3333 forbids them from an app); waitress frames.
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                            "trailers", "transfer-encoding", "upgrade", "content-length"})


class FrontDoor:
    """The gateway served over HTTP at host:port (port 0: an ephemeral one, told by `port`)."""

    def __init__(self, api: ApiModel, lambdas: InProcessLambdas, host: str = "127.0.0.1", port: int = 0,
                 stage: str = "local", account: str = "123456789012", region: str = "us-east-1",
                 read_timeout: float = 30.0):
        self.gateway = Gateway(api, lambdas, stage=stage, account=account, region=region)
        self.server = _Server(
            _Application(self.gateway), host=host, port=port, threads=WORKER_THREADS,
            connection_limit=CONNECTION_LIMIT, asyncore_use_poll=True,  # select() stops at 1024 sockets
            channel_timeout=max(1, math.ceil(read_timeout)), cleanup_interval=1,
            max_request_body_size=API_GATEWAY_MAX_BODY + 1,  # waitress refuses bodies >= this
            ident="batchgate-local", clear_untrusted_proxy_headers=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.effective_port

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.run, name="batchgate-front-door", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every connection (in the I/O thread, through waitress's
        trigger, which runs a callable there), then end the worker threads."""
        if self._thread and self._thread.is_alive():
            try:
                self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
            except OSError:  # the trigger is closed: the I/O loop already closed its map and is ending
                pass
            self._thread.join(timeout=10)
        if not (self._thread and self._thread.is_alive()) and self.server._map:
            wasyncore.close_all(self.server._map)  # the loop ended (or never ran) without closing everything
        self.server.task_dispatcher.shutdown(timeout=10)


class _Application:
    """The WSGI application: one request to the gateway, its answer back."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        request: HTTPRequestParser = environ["batchgate.request"]
        try:
            answer = _beyond_limits(request) or self.gateway.handle(
                request.command, request.request_uri, _headers(request), environ["wsgi.input"].read())
        except Exception:  # a bug here must not hang the client
            logger.exception("local front door failed")
            answer = refusal(500, "Local front door error", type_="server_error")
        status, headers, body = answer
        forwarded = [(k, v) for k, v in headers if k.lower() not in _NOT_FORWARDED]
        start_response(_status_line(status), [*forwarded, ("Content-Length", str(len(body)))])
        return [] if request.command == "HEAD" else [body]


def _beyond_limits(request: HTTPRequestParser) -> Answer | None:
    if request.version not in ("1.0", "1.1"):
        return refusal(400, f"Bad request: unsupported HTTP version {request.version[:20]!r}.")
    if len(request.first_line) > MAX_LINE:
        return refusal(414, "Request URI too long.")
    if len(request.headers) > MAX_HEADERS or any(len(k) + 2 + len(v) > MAX_LINE for k, v in request.headers.items()):
        return refusal(431, "Request header fields too large.")
    return None


def _headers(request: HTTPRequestParser) -> list[tuple[str, str]]:
    """The request's headers under their usual names. A WSGI server keeps a header's value, not the
    spelling of its name (API Gateway keeps it): `X_AMZN_TRACE_ID` comes back as `X-Amzn-Trace-Id`.
    The handlers look names up case-insensitively, as they must for HTTP/2 clients' lower case.
    Waitress joins a repeated header's values with ", " and drops names with an underscore (which
    a proxy could take for a dash)."""
    return [("-".join(part.capitalize() for part in key.split("_")), value)
            for key, value in request.headers.items()]


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Status"


# -- waitress, extended ----------------------------------------------------------------------------

class _RequestTimeout(BadRequest):
    code = 408
    reason = "Request Timeout"


class _Parser(HTTPRequestParser):
    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked:  # the quota is on the decoded body, checked by the gateway
            self.adj = copy.copy(self.adj)
            self.adj.max_request_body_size += CHUNK_FRAMING_ALLOWANCE


class _Task(WSGITask):
    def get_environment(self) -> dict:
        environ = super().get_environment()
        environ["batchgate.request"] = self.request  # the raw request target, version and headers
        return environ


class _ErrorTask(ErrorTask):
    """Waitress's refusals (bad framing, too large, too slow) in OpenAI's error envelope. The rest of
    the request was not read, so the connection closes after the answer."""

    def execute(self) -> None:
        # A request line that did not parse leaves no path or method on the request.
        status, headers, body = _refusal_for(self.request.error, getattr(self.request, "path", None) or "/")
        self.status = _status_line(status)
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        if getattr(self.request, "command", None) != "HEAD":
            self.write(body)


def _refusal_for(error: Error, path: str) -> Answer:
    if isinstance(error, RequestEntityTooLarge):
        return too_large(path)
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return refusal(431, "Request header fields too large.")
    if isinstance(error, _RequestTimeout):
        return refusal(408, "The request body did not arrive in time.", "request_timeout")
    if isinstance(error, (BadRequest, ServerNotImplemented)):  # 501: a transfer coding other than chunked
        return refusal(400, f"Bad request: {str(error.body).rstrip('.')}.")
    return refusal(500, "Local front door error", type_="server_error")


class _Channel(HTTPChannel):
    parser_class = _Parser
    task_class = _Task
    error_task_class = _ErrorTask

    def time_out_request(self) -> None:
        """The request whose body stopped arriving becomes a 408 (the channel's own bookkeeping, as
        `received` does it for a complete request)."""
        with self.requests_lock:
            request, self.request = self.request, None
            request.error = _RequestTimeout("The request body did not arrive in time.")
            request.completed = True
            self.requests.append(request)
            if len(self.requests) == 1:
                self.server.add_task(self)


class _Server(TcpWSGIServer):
    channel_class = _Channel

    def maintenance(self, now: float) -> None:
        # Waitress closes an idle channel without a word; one idle in the middle of a body (its
        # headers were read) gets its 408 first, as from http.server before.
        cutoff = now - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is not None and request.headers_finished and not request.completed \
                    and not channel.requests and channel.last_activity < cutoff:
                channel.time_out_request()
        super().maintenance(now)
