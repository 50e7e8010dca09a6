"""POSTs one signed webhook: resolve the host, check every address (domain/webhooks.resolve_target),
then connect to the address that was checked, with the name as Host header and TLS SNI/certificate name,
so a DNS answer that changes between the check and the connection (rebinding) cannot redirect it.
Redirects are not followed and the answer's body is never read: only the status counts."""
from __future__ import annotations

import socket

import httpx

from batchgate.domain.webhooks import AttemptResult, WebhookUrlError, resolve_target


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookUrlError(f"{host} does not resolve ({exc.strerror})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class WebhookSender:
    def __init__(self, timeout_seconds: float, allow_loopback: bool, resolver=system_resolver):
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        # One short timeout for connect, write and the wait for the answer's headers: a dead endpoint
        # holds one delivery for this long and nothing else.
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, trust_env=False)

    def post(self, url: str, headers: dict[str, str], body: str) -> AttemptResult:
        try:
            target = resolve_target(url, self.resolver, allow_loopback=self.allow_loopback)
        except WebhookUrlError as exc:
            return AttemptResult(False, f"blocked: {exc}")
        request = self._client.build_request(
            "POST", target.connect_url, content=body.encode(), headers={**headers, "host": target.host_header},
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
        try:
            response = self._client.send(request, stream=True)
            response.close()
        except httpx.TimeoutException:
            return AttemptResult(False, "timeout")
        except httpx.HTTPError as exc:
            return AttemptResult(False, f"{type(exc).__name__}: {exc}"[:300])
        return AttemptResult(200 <= response.status_code < 300, str(response.status_code))
