"""The OpenAI-compatible server that answers batch lines (aiohttp, async).

The pool is aiohttp's: at 32 and 256 requests in flight it costs 0.1-0.3 ms of CPU per request,
against 3-20 ms for httpx's (httpcore rescans every connection on each request and release,
encode/httpcore#1035); `python -m bench --only worker` measures both side by side. An explicit httpx
`transport` (tests: httpx.MockTransport) sends through httpx instead; the retry policy is the same code.

Retries what the OpenAI SDK retries (408, 409, 429, 5xx, connection errors and timeouts; the
`x-should-retry` header overrides), with jittered exponential backoff that honours `retry-after-ms`
and `Retry-After`. A retry that would not fit before `give_up_at` is not attempted: the line is left
unanswered (None) so it runs again later instead of being recorded as failed.

Requests in flight adapt to the upstream (AIMD, `AdaptiveLimit`): a 429 shrinks the worker's window,
answers grow it back up to `concurrency`, so a rate-limited upstream is kept near its limit without a
storm of 429s. Every worker adapts on its own to the same 429s, as TCP's flows share a link.

An answer is untrusted input: its body is read as it streams in and never past the upstream's
`max_answer_bytes` (a declared Content-Length over it is refused before reading). Over the cap the
connection is closed, not returned to the pool mid-body, and the line fails with `response_too_large`,
not retried: the same request would get the same answer.
"""
from __future__ import annotations

import asyncio
import codecs
import email.utils
import functools
import http.cookiejar
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import orjson
import yarl
from aiohttp.helpers import get_env_proxy_for_url

from batchgate import aws
from batchgate.contract import UpstreamSettings
from batchgate.domain.jsonl import one_line_json
from batchgate.domain.ports import UpstreamAnswer, UpstreamFailure, UpstreamTally

RETRY_STATUS = frozenset({408, 409, 429})
MAX_HONOURED_RETRY_AFTER = 60.0


@functools.lru_cache(maxsize=32)
def _cached_key(env: str | None, ssm: str | None, secret: str | None) -> str | None:
    if env:
        return os.environ.get(env) or None
    if ssm:
        return aws.client("ssm").get_parameter(Name=ssm, WithDecryption=True)["Parameter"]["Value"]
    if secret:
        value = aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        try:  # a JSON secret {"api_key": "..."} or the bare key
            parsed = orjson.loads(value)
            if isinstance(parsed, dict) and "api_key" in parsed:
                return str(parsed["api_key"])
        except orjson.JSONDecodeError:
            pass
        return value
    return None


def api_key(settings: UpstreamSettings) -> str | None:
    """The upstream's key, read once per cold start."""
    return _cached_key(settings.api_key_env, settings.api_key_ssm_parameter, settings.api_key_secret_id)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`headers`: a case-insensitive mapping (aiohttp's CIMultiDictProxy, httpx.Headers)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class _Reply:
    """An upstream's answer, whichever client read it."""
    status_code: int
    headers: Mapping[str, str]   # case-insensitive
    content: bytes


class _TimedOut(Exception):
    """The upstream did not answer in time (connect, read or write)."""


class _Unreachable(Exception):
    """The connection failed, or what came back was not HTTP."""


class _TooLarge(Exception):
    """The answer's body is longer than the upstream's `max_answer_bytes` (declared: its Content-Length)."""

    def __init__(self, status_code: int, declared: int | None):
        super().__init__(status_code, declared)
        self.status_code, self.declared = status_code, declared


def _declared_too_large(headers: Mapping[str, str], cap: int) -> int | None:
    """The Content-Length when it already says the body is over `cap`, else None. Only for a body sent as
    is: an encoded (compressed) one's Content-Length says nothing exact about the decoded bytes counted."""
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None
    try:
        declared = int(headers.get("content-length") or -1)
    except ValueError:
        return None
    return declared if declared > cap else None


def _should_retry(resp: _Reply) -> bool:
    forced = resp.headers.get("x-should-retry")
    if forced == "true":
        return True
    if forced == "false":
        return False
    return resp.status_code in RETRY_STATUS or resp.status_code >= 500


def _charset(content_type: str | None) -> str:
    """The content-type's charset if Python knows it, else utf-8 (as httpx's Response.text)."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip("\"'")).name
            except LookupError:
                break
    return "utf-8"


def _body(resp: _Reply) -> tuple[Any, bytes | None]:
    """(parsed, raw one-line JSON) of a JSON body; (text, None) for anything else."""
    try:
        return orjson.loads(resp.content), one_line_json(resp.content.strip(b" \t\r\n"))
    except orjson.JSONDecodeError:
        return resp.content.decode(_charset(resp.headers.get("content-type")), errors="replace"), None


class AdaptiveLimit:
    """How many requests may be in flight: the upstream's `concurrency` until it answers 429, then a
    multiplicative decrease, at most once per window (the 429s of requests sent before the last decrease
    say nothing new), and an additive increase of one per window of answers, back up to `concurrency`.
    Shared by every chunk run on one event loop, as the connection pool is.

    It starts at the ceiling, not with TCP's slow start: a few slow requests (long generations) would
    hold a small starting window for minutes, and an upstream without a limit never sees a 429 anyway.
    The first window over a limit costs one burst of 429s (retried), once per worker."""

    DECREASE = 0.85   # the window sits between 0.85 and 1 of the limit: ~92% used, a 429 per ~0.15 N² answers

    def __init__(self, ceiling: int):
        self.ceiling = max(1, ceiling)
        self.window = float(self.ceiling)
        self.in_flight = 0
        self.epoch = 0                     # bumped by each decrease
        self._room = asyncio.Event()       # one event loop's: no lock needed

    async def acquire(self) -> int:
        """Wait for room; returns the epoch the request is sent in."""
        while self.in_flight >= max(1, int(self.window)):
            self._room.clear()
            await self._room.wait()
        self.in_flight += 1
        return self.epoch

    def release(self, epoch: int, throttled: bool) -> None:
        self.in_flight -= 1
        if throttled:
            if epoch == self.epoch:
                self.window = max(1.0, self.window * self.DECREASE)
                self.epoch += 1
        else:
            self.window = min(float(self.ceiling), self.window + 1 / self.window)
        self._room.set()


@functools.cache
def _env_proxy(base_url: str) -> tuple[yarl.URL | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for this upstream (HTTP(S)_PROXY, honouring NO_PROXY), looked up
    once per pool. aiohttp's trust_env would look it up, and read the netrc file, on an executor thread
    for every request: at 256 in flight that thread traffic cost the worker ~0.5 ms of CPU per request
    (socket sends waiting on the GIL), and a netrc entry could add credentials to upstream requests."""
    try:
        return get_env_proxy_for_url(yarl.URL(base_url))
    except LookupError:
        return None, None


def _ssl_context():
    """httpx's default context, built once per process: loading the CA bundle costs 35-130 ms of CPU,
    which a new client per chunk run would pay every time (an SSLContext is safe to share)."""
    return httpx.create_ssl_context()


class _NoCookies(http.cookiejar.CookiePolicy):
    """Upstream clients are shared by every tenant and batch on a worker: a cookie one line's answer
    sets must never ride on another line's request, so none is stored and none is sent."""
    netscape, rfc2965, hide_cookie2 = True, False, False

    def set_ok(self, cookie, request) -> bool:
        return False

    def return_ok(self, cookie, request) -> bool:
        return False

    def domain_return_ok(self, domain, request) -> bool:
        return False

    def path_return_ok(self, path, request) -> bool:
        return False


def _headers(key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "batchgate"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


class _Pool(Protocol):
    """Connections to one upstream: `send` POSTs a body and reads the whole answer, raising _TooLarge
    (connection closed) once it passes `max_answer_bytes`."""
    @property
    def is_closed(self) -> bool: ...

    @property
    def cookies(self) -> Any: ...   # always empty: see _NoCookies

    async def send(self, url: str, body: bytes) -> _Reply: ...

    async def aclose(self) -> None: ...


class _AiohttpPool:
    """The worker's pool: `concurrency` keep-alive connections, no cookies, no redirects followed.
    Timeouts as httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds) had them: each read
    may wait `timeout_seconds`, a TCP/TLS connect `connect_timeout_seconds`, and getting a connection
    from the pool (the AdaptiveLimit keeps it from filling) `timeout_seconds`."""

    def __init__(self, settings: UpstreamSettings, key: str | None):
        connector = aiohttp.TCPConnector(limit=max(1, settings.concurrency), limit_per_host=0,
                                         ssl=_ssl_context())
        self.session = aiohttp.ClientSession(
            connector=connector, headers=_headers(key), cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, connect=settings.timeout_seconds,
                                          sock_connect=settings.connect_timeout_seconds,
                                          sock_read=settings.timeout_seconds),
            trust_env=False)
        self.proxy, self.proxy_auth = _env_proxy(settings.base_url)   # as httpx's default: from the environment
        self.max_answer_bytes = settings.max_answer_bytes

    @property
    def is_closed(self) -> bool:
        return self.session.closed

    @property
    def cookies(self) -> aiohttp.abc.AbstractCookieJar:
        return self.session.cookie_jar

    async def send(self, url: str, body: bytes) -> _Reply:
        try:
            async with self.session.post(url, data=body, allow_redirects=False, proxy=self.proxy,
                                         proxy_auth=self.proxy_auth) as resp:
                return _Reply(resp.status, resp.headers, await self._read_capped(resp))
        except TimeoutError as exc:   # aiohttp's timeouts are TimeoutErrors
            raise _TimedOut(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise _Unreachable(str(exc) or type(exc).__name__) from exc

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, read as it comes (aiohttp's stream holds at most ~128 KiB unread per connection and
        decompresses in bounded steps), up to `max_answer_bytes`. Over it: close the connection (leaving
        the `async with` would release it, and a connection mid-body must not go back to the pool)."""
        cap = self.max_answer_bytes
        declared = _declared_too_large(resp.headers, cap)
        if declared is not None:
            resp.close()
            raise _TooLarge(resp.status, declared)
        parts: list[bytes] = []
        size = 0
        async for part in resp.content.iter_any():
            size += len(part)
            if size > cap:
                resp.close()
                raise _TooLarge(resp.status, None)
            parts.append(part)
        return b"".join(parts)

    async def aclose(self) -> None:
        await self.session.close()


class _HttpxPool:
    """An httpx client over an explicit transport (tests: httpx.MockTransport)."""

    def __init__(self, settings: UpstreamSettings, key: str | None, transport: httpx.AsyncBaseTransport):
        self.client = httpx.AsyncClient(
            headers=_headers(key), transport=transport, verify=_ssl_context(), follow_redirects=False,
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=settings.concurrency,
                                max_keepalive_connections=settings.concurrency))
        self.max_answer_bytes = settings.max_answer_bytes

    @property
    def is_closed(self) -> bool:
        return self.client.is_closed

    @property
    def cookies(self) -> httpx.Cookies:
        return self.client.cookies

    async def send(self, url: str, body: bytes) -> _Reply:
        cap = self.max_answer_bytes
        try:
            async with self.client.stream("POST", url, content=body) as resp:   # closed on the way out
                declared = _declared_too_large(resp.headers, cap)
                if declared is not None:
                    raise _TooLarge(resp.status_code, declared)
                parts: list[bytes] = []
                size = 0
                async for part in resp.aiter_bytes():
                    size += len(part)
                    if size > cap:
                        raise _TooLarge(resp.status_code, None)
                    parts.append(part)
                return _Reply(resp.status_code, resp.headers, b"".join(parts))
        except httpx.TimeoutException as exc:
            raise _TimedOut(type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise _Unreachable(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self.client.aclose()


# One pool per event loop and upstream, shared by every UpstreamClient on that loop. A pool belongs
# to the loop it first ran on. A fresh pool per 500-line chunk run cost ~45% more CPU per request
# than one warm pool (measured with httpx, bench section 2), besides new TCP/TLS handshakes. A
# worker loop that lives across invocations keeps its pools.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, _Pool]] = weakref.WeakKeyDictionary()
_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AdaptiveLimit]] = weakref.WeakKeyDictionary()
_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


async def _pooled(settings: UpstreamSettings, key: str | None) -> _Pool:
    loop = asyncio.get_running_loop()
    pool_key = (settings.model_dump_json(), key)
    with _pools_lock:
        pools = _pools.get(loop)
        first = pools is None
        if pools is None:
            pools = _pools[loop] = {}
        pool = pools.get(pool_key)
        if pool is None or pool.is_closed:
            pool = pools[pool_key] = _AiohttpPool(settings, key)
    if first:
        keeper = _keepers[loop] = _close_when_the_loop_ends(loop, pools)
        await anext(keeper)
    return pool


async def _close_when_the_loop_ends(loop: asyncio.AbstractEventLoop, pools: dict[tuple, _Pool]):
    """Suspended for the loop's life. A loop finalizes its async generators before it closes
    (asyncio.run and worker_loop call loop.shutdown_asyncgens()), and this one closes the loop's pools
    then, on the loop, so no connection is left for the garbage collector to complain about."""
    try:
        yield
    finally:
        with _pools_lock:
            left = list(pools.values())
            pools.clear()
            _pools.pop(loop, None)
            _keepers.pop(loop, None)
        for pool in left:
            await pool.aclose()


async def close_pools() -> None:
    """Close the running loop's upstream pools now (the next request opens a new pool)."""
    with _pools_lock:
        pools = _pools.get(asyncio.get_running_loop(), {})
        left = list(pools.values())
        pools.clear()
    for pool in left:
        await pool.aclose()


def _shared_limit(settings: UpstreamSettings) -> AdaptiveLimit:
    """This event loop's adaptive limit for the upstream at `settings.base_url` (one per upstream)."""
    loop = asyncio.get_running_loop()
    with _pools_lock:
        limits = _limits.setdefault(loop, {})
        limit = limits.get(settings.base_url)
        if limit is None or limit.ceiling != max(1, settings.concurrency):
            limit = limits[settings.base_url] = AdaptiveLimit(settings.concurrency)
    return limit


class UpstreamClient:
    """A handle on this event loop's pool for `settings` (cheap to build per chunk run; `async with`
    leaves the pool open). With an explicit httpx `transport` (tests) it has an httpx client of its
    own, closed on exit."""

    def __init__(self, settings: UpstreamSettings, key: str | None, *, backoff_base: float = 0.5,
                 backoff_cap: float = 20.0, transport: httpx.AsyncBaseTransport | None = None,
                 name: str = "default"):
        self.settings, self.key, self.name = settings, key, name
        self.tally = UpstreamTally()
        self.base_url = settings.base_url.rstrip("/")
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._client: _Pool | None = _HttpxPool(settings, key, transport) if transport is not None else None
        self._owns_client = self._client is not None
        self._limit: AdaptiveLimit | None = AdaptiveLimit(settings.concurrency) if transport is not None else None

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    @property
    def concurrency(self) -> int:
        return max(1, self.settings.concurrency)

    def url_for(self, line_url: str) -> str:
        path = line_url[3:] if line_url.startswith("/v1/") else line_url
        return self.base_url + path

    def _too_large_message(self, exc: _TooLarge) -> str:
        size = (f"declared {exc.declared:,} bytes" if exc.declared is not None
                else "sent more bytes than that")
        return (f"The answer of upstream {self.name!r} (HTTP {exc.status_code}) exceeds the "
                f"{self.settings.max_answer_bytes:,}-byte cap on an answer (max_answer_bytes): it {size} "
                "and was not read further.")

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2 ** attempt) * random.uniform(0.5, 1.0)

    async def post(self, line_url: str, body: bytes, *, give_up_at: float | None = None
                   ) -> UpstreamAnswer | UpstreamFailure | None:
        """POST one line's body. `give_up_at` is a time.monotonic() deadline for starting retries."""
        url = self.url_for(line_url)
        client, limit = self._client, self._limit
        if client is None:  # first request of this run: bind to the running loop's pool
            client = self._client = await _pooled(self.settings, self.key)
        if limit is None:
            limit = self._limit = _shared_limit(self.settings)
        attempts = max(1, self.settings.max_attempts)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            wait: float | None = None
            if attempt:
                self.tally.retries += 1
            epoch = await limit.acquire()
            started = time.monotonic()
            try:
                resp = await client.send(url, body)
            except _TimedOut as exc:
                limit.release(epoch, throttled=False)
                self.tally.request((time.monotonic() - started) * 1000, None)
                outcome: UpstreamAnswer | UpstreamFailure = UpstreamFailure(
                    "request_timeout", f"The upstream did not answer in time ({exc!s}).")
                retry = True
            except _Unreachable as exc:
                limit.release(epoch, throttled=False)
                self.tally.request((time.monotonic() - started) * 1000, None)
                outcome = UpstreamFailure("upstream_error", f"The upstream could not be reached: {exc!s}"[:500])
                retry = True
            except _TooLarge as exc:   # the same request would get the same answer: not retried
                limit.release(epoch, throttled=exc.status_code == 429)
                self.tally.request((time.monotonic() - started) * 1000, exc.status_code)
                outcome = UpstreamFailure("response_too_large", self._too_large_message(exc))
                retry = False
            except BaseException:  # abandoned (cancelled) in flight
                limit.release(epoch, throttled=False)
                raise
            else:
                limit.release(epoch, throttled=resp.status_code == 429)
                self.tally.request((time.monotonic() - started) * 1000, resp.status_code)
                rid = resp.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}"
                outcome = UpstreamAnswer(resp.status_code, rid, *_body(resp))
                retry = resp.status_code >= 300 and _should_retry(resp)
                hinted = retry_after_seconds(resp.headers)
                if hinted is not None and hinted <= MAX_HONOURED_RETRY_AFTER:
                    wait = hinted
            if not retry or last:
                return outcome
            if wait is None:
                wait = self._backoff(attempt)
            if give_up_at is not None and time.monotonic() + wait >= give_up_at:
                return None
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")
