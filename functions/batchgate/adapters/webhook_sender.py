"""POSTs one signed webhook: resolve the host, check every address (domain/webhooks.resolve_target),
then connect to the address that was checked, with the name as Host header and TLS SNI/certificate name,
so a DNS answer that changes between the check and the connection (rebinding) cannot redirect it.
Redirects are not followed and the answer's body is never read: only the status counts. The whole
attempt (connect, send, the answer's status line and headers) has one deadline, so an endpoint that
never answers, or trickles its headers, holds one delivery for that long and nothing else."""
from __future__ import annotations

import asyncio
import socket
import time

import httpx

from batchgate.domain.webhooks import AttemptResult, WebhookTarget, WebhookUrlError, resolve_target
from batchgate.worker_loop import run_on_worker_loop


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookUrlError(f"{host} does not resolve ({exc.strerror})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class WebhookSender:
    def __init__(self, timeout_seconds: float, allow_loopback: bool, resolver=system_resolver):
        self.timeout_seconds = timeout_seconds
        self.allow_loopback = allow_loopback
        self.resolver = resolver

    def post(self, url: str, headers: dict[str, str], body: str) -> AttemptResult:
        try:
            target = resolve_target(url, self.resolver, allow_loopback=self.allow_loopback)
        except WebhookUrlError as exc:
            return AttemptResult(False, f"blocked: {exc}")
        return run_on_worker_loop(self._send(target, headers, body))

    async def _send(self, target: WebhookTarget, headers: dict[str, str], body: str) -> AttemptResult:
        started = time.monotonic()

        def result(ok: bool, detail: str) -> AttemptResult:
            return AttemptResult(ok, detail, latency_ms=(time.monotonic() - started) * 1000)
        try:
            async with asyncio.timeout(self.timeout_seconds), httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout_seconds), follow_redirects=False, trust_env=False) as client:
                request = client.build_request(
                    "POST", target.connect_url, content=body.encode(),
                    headers={**headers, "host": target.host_header},
                    extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
                response = await client.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return result(False, "timeout")
        except httpx.HTTPError as exc:
            return result(False, f"{type(exc).__name__}: {exc}"[:300])
        return result(200 <= response.status_code < 300, str(response.status_code))
