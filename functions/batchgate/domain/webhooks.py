"""Signed webhooks for terminal batch events, as OpenAI sends them (Standard Webhooks).

An EventBridge status event becomes one `WebhookDeliveryMessage` per subscribed endpoint of its tenant
(`fan_out`): each delivery is its own SQS message, so a slow or dead endpoint holds up no other. Ids are
derived, not random: the event id from (tenant, batch, type) and the `webhook-id` from (event, endpoint),
so a re-published event or a re-run fan-out produces the same ids and receivers dedupe them as the spec
tells them to. `deliver` makes one attempt; a failure (timeout, connection error, non-2xx, an address
that may not be called) is re-sent with the next delay of the schedule, each hop at most SQS's 900 s
(`not_before` carries longer waits across hops); past the last attempt it goes to the dead-letter queue.
Every attempt is signed anew (the timestamp must be fresh: verifiers refuse ones older than 5 minutes).

Each endpoint has a circuit breaker, kept on its item in the webhooks table (`BreakerPolicy`, conditional
UpdateItems): `failures` consecutive failed attempts open it for a cool-down; while open, a delivery is
not attempted but re-sent with an SQS delay until the cool-down ends (`deferred`: no attempt used, same
webhook-id), so a dead endpoint with many deliveries due cannot hold the function's concurrency. After the
cool-down one probe goes through (half-open): a 2xx closes the breaker, a failure reopens it with twice the
cool-down (capped). A delivery deferred past its window (the schedule's total, from its first step) is
dead-lettered (the policy's window, 24 h, from its first step), as if its last attempt had failed.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets as _secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from batchgate.domain.keys import check_tenant
from batchgate.models.webhooks import (
    WEBHOOK_EVENT_TYPES,
    EndpointBreaker,
    WebhookDeliveryMessage,
    WebhookEndpointRecord,
    WebhookEventType,
)

# 5 s, 5 min, 30 min, 2 h, 5 h, 8 h, 8 h: eight attempts over 23.6 hours.
DEFAULT_RETRY_SCHEDULE: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 28800, 28800)
MAX_SQS_DELAY = 900
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
USER_AGENT = "batchgate-webhooks/1"


class WebhookUrlError(ValueError):
    """A URL that webhooks may not be sent to (scheme, form, or an address that is not public)."""


# -- ids, secrets, the event body --------------------------------------------------------------

def generate_secret() -> str:
    """`whsec_` + base64 of 32 random bytes (padded: the OpenAI SDK decodes it without adding padding)."""
    import base64
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """A usable signing secret, or ValueError (both the SDK and the library must decode it)."""
    import base64
    import binascii
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if len(raw) < 24:
        raise ValueError("a webhook secret needs at least 24 random bytes")
    return secret


def endpoint_id() -> str:
    return "we_" + _secrets.token_hex(16)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def event_id(tenant: str, batch_id: str, event_type: str) -> str:
    """A batch reaches a terminal status once: its event has one id, however often it is published."""
    return "evt_" + _digest(tenant, batch_id, event_type)


def webhook_id(evt_id: str, endpoint: str) -> str:
    return "wh_" + _digest(evt_id, endpoint)


def event_body(evt_id: str, event_type: str, created_at: int, batch_id: str) -> str:
    """OpenAI's batch webhook event (`client.webhooks.unwrap` parses it into Batch*WebhookEvent)."""
    return json.dumps({"object": "event", "id": evt_id, "type": event_type, "created_at": created_at,
                       "data": {"id": batch_id}}, separators=(",", ":"))


def batch_of(body: str) -> str | None:
    """The batch id in an event body (`data.id`): for log lines of a delivery (its message names no batch)."""
    try:
        value = json.loads(body)["data"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def signed_headers(webhook: str, timestamp: int, body: str, secrets: Sequence[str]) -> dict[str, str]:
    """Standard Webhooks headers; one `v1,<sig>` per secret, space separated (a rotation's grace period)."""
    at = datetime.fromtimestamp(timestamp, tz=UTC)
    signature = " ".join(Webhook(s).sign(webhook, at, body) for s in secrets)
    return {"webhook-id": webhook, "webhook-timestamp": str(timestamp), "webhook-signature": signature,
            "content-type": "application/json", "user-agent": USER_AGENT}


def new_endpoint(tenant: str, url: str, events: Sequence[str] | None, *, now: int, allow_loopback: bool,
                 secret: str | None = None) -> WebhookEndpointRecord:
    """A checked endpoint with a new secret (or the one given: local mode's --webhook-secret)."""
    check_tenant(tenant)
    check_url(url, allow_loopback=allow_loopback)
    chosen = list(dict.fromkeys(events or WEBHOOK_EVENT_TYPES))
    unknown = [e for e in chosen if e not in WEBHOOK_EVENT_TYPES]
    if unknown or not chosen:
        raise ValueError(f"unknown event types {unknown}; choose from {', '.join(WEBHOOK_EVENT_TYPES)}")
    typed: list[WebhookEventType] = [e for e in WEBHOOK_EVENT_TYPES if e in chosen]
    return WebhookEndpointRecord(id=endpoint_id(), tenant=tenant, url=url, events=typed,
                                 secret=check_secret(secret) if secret else generate_secret(), created_at=now)


# -- where a webhook may go --------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookTarget:
    """A checked URL: connect to `address` (never resolve again: DNS rebinding), send Host/SNI `host`."""
    scheme: str
    host: str
    port: int
    path: str           # path and query, at least "/"
    address: str

    @property
    def connect_url(self) -> str:
        ip = ipaddress.ip_address(self.address)
        netloc = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.scheme}://{netloc}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def check_url(url: str, *, allow_loopback: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a URL webhooks may be configured with, before any DNS: https only
    (http only to a loopback host where loopback is allowed: local mode), no credentials or fragment,
    and an address literal must itself be allowed."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"a webhook URL is 1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise WebhookUrlError("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlError(f"not a valid URL: {exc}") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("https", "http"):
        raise WebhookUrlError("a webhook URL must be https://")
    if not host:
        raise WebhookUrlError("a webhook URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("a webhook URL may not carry credentials")
    if parts.fragment:
        raise WebhookUrlError("a webhook URL has no #fragment")
    name = host.rstrip(".")
    if not allow_loopback and (name == "localhost" or name.endswith(".localhost")):
        # RFC 6761: these names are loopback wherever they are resolved; refused now, not after a day of retries
        raise WebhookUrlError(f"webhooks are not sent to {host} (a loopback name)")
    literal = _ip(host)
    if scheme == "http" and not (allow_loopback and (host == "localhost" or (literal and literal.is_loopback))):
        raise WebhookUrlError("a webhook URL must be https:// (http:// only to 127.0.0.1 in local mode)")
    if literal is not None:
        check_address(str(literal), allow_loopback=allow_loopback)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_address(address: str, *, allow_loopback: bool) -> None:
    """Only public unicast addresses: never private, loopback (unless allowed), link-local (the instance
    metadata service), shared, reserved, multicast or unspecified ones; IPv4 inside IPv6 is judged as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise WebhookUrlError(f"not an IP address: {address!r}") from None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in ipaddress.ip_network("64:ff9b::/96"):   # NAT64
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return check_address(str(embedded), allow_loopback=allow_loopback)
    if allow_loopback and ip.is_loopback:
        return
    if not ip.is_global or ip.is_multicast:
        raise WebhookUrlError(f"webhooks are not sent to {ip} (not a public address)")


Resolver = Callable[[str, int], list[str]]


def resolve_target(url: str, resolve: Resolver, *, allow_loopback: bool) -> WebhookTarget:
    """The URL checked after DNS: every address the name resolves to must be allowed (a name that also
    points inside is refused, not raced), and the request goes to the first, the address checked."""
    scheme, host, port, path = check_url(url, allow_loopback=allow_loopback)
    literal = _ip(host)
    addresses = [str(literal)] if literal is not None else resolve(host, port)
    if not addresses:
        raise WebhookUrlError(f"{host} does not resolve")
    for address in addresses:
        check_address(address, allow_loopback=allow_loopback)
    return WebhookTarget(scheme=scheme, host=host, port=port, path=path, address=addresses[0])


# -- fan-out and delivery ----------------------------------------------------------------------

class WebhookEndpoints(Protocol):
    def get(self, tenant: str, endpoint_id: str) -> WebhookEndpointRecord | None: ...
    def list(self, tenant: str) -> list[WebhookEndpointRecord]: ...


class Breakers(Protocol):
    """The breaker's conditional writes (adapters/webhook_store.py); False/None when the condition failed."""
    def count_failure(self, tenant: str, endpoint_id: str) -> EndpointBreaker | None: ...
    def open_breaker(self, tenant: str, endpoint_id: str, *, until: int, opens: int, expect_opens: int) -> bool: ...
    def take_probe(self, tenant: str, endpoint_id: str, *, open_until: int, now: int, lease_until: int) -> bool: ...
    def close_breaker(self, tenant: str, endpoint_id: str) -> bool: ...


@dataclass(frozen=True)
class BreakerPolicy:
    """`failures` consecutive failed attempts open an endpoint's breaker for `cooldown` seconds, doubled
    after each failed probe up to `max_cooldown`; a probe's lease is one attempt's timeout plus a margin."""
    failures: int = 5
    cooldown: int = 60
    max_cooldown: int = 900
    probe_lease: int = 15
    window: int = 24 * 3600     # a delivery deferred this long after its first step is dead-lettered

    def cooldown_after(self, opens: int) -> int:
        return min(self.max_cooldown, self.cooldown * (1 << min(max(opens, 1) - 1, 30)))


def parse_breaker(raw: str, timeout_seconds: float) -> BreakerPolicy:
    """'5,60,900,86400' -> BreakerPolicy(5, 60, 900, lease = the attempt timeout + 5 s, window 86400)."""
    failures, cooldown, max_cooldown, window = (int(p) for p in raw.split(","))
    if failures < 1 or cooldown < 1 or max_cooldown < cooldown or window < 1:
        raise ValueError("webhook breaker: failures >= 1, cool-down >= 1 s, max cool-down >= cool-down, window >= 1 s")
    return BreakerPolicy(failures, cooldown, max_cooldown, probe_lease=int(timeout_seconds) + 5, window=window)


class DeliveryQueue(Protocol):
    def send(self, messages: Sequence[WebhookDeliveryMessage], delay_seconds: int = 0) -> None: ...
    def dead_letter(self, message: WebhookDeliveryMessage) -> None: ...


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    detail: str     # "200", "timeout", "connect error", "blocked: ...": for logs and the DLQ
    latency_ms: float = 0.0


class Sender(Protocol):
    def post(self, url: str, headers: dict[str, str], body: str) -> AttemptResult: ...


def fan_out(tenant: str, batch_id: str, status: str, created_at: int,
            endpoints: WebhookEndpoints) -> list[WebhookDeliveryMessage]:
    """One delivery per endpoint of `tenant` subscribed to `batch.<status>` (none for other statuses)."""
    event_type = f"batch.{status}"
    if event_type not in WEBHOOK_EVENT_TYPES:
        return []
    evt = event_id(tenant, batch_id, event_type)
    body = event_body(evt, event_type, created_at, batch_id)
    return [WebhookDeliveryMessage(tenant=tenant, endpoint_id=ep.id, webhook_id=webhook_id(evt, ep.id),
                                   event_type=event_type, body=body)
            for ep in endpoints.list(tenant) if event_type in ep.events]


def deliver(message: WebhookDeliveryMessage, *, endpoints: WebhookEndpoints, queue: DeliveryQueue,
            sender: Sender, schedule: Sequence[int], now: int,
            on_attempt: Callable[[AttemptResult], None] | None = None,
            breakers: Breakers | None = None, breaker: BreakerPolicy | None = None,
            on_breaker: Callable[[str], None] | None = None) -> str:
    """One step of one delivery; returns the outcome (for logs and metrics). `on_attempt` sees each POST's
    result (metrics); `on_breaker` each breaker change ("opened", "reopened", "closed"). Without `breakers`
    and `breaker` every due delivery is attempted."""
    if message.not_before > now:   # a long backoff, carried over hops of at most 900 s
        queue.send([message], delay_seconds=min(MAX_SQS_DELAY, message.not_before - now))
        return "waiting"
    endpoint = endpoints.get(message.tenant, message.endpoint_id)
    if endpoint is None:
        return "endpoint_deleted"
    if message.event_type not in endpoint.events:
        return "unsubscribed"
    if not message.window_ends_at:
        window = breaker.window if breaker is not None else sum(max(0, int(d)) for d in schedule)
        message = message.model_copy(update={"window_ends_at": now + window})
    state, probe = endpoint.breaker, False
    if breakers is not None and breaker is not None and state.open_until:
        if state.open_until > now:                        # open: wait out the cool-down, no POST
            return _defer(message, queue, until=state.open_until, now=now)
        if not breakers.take_probe(message.tenant, message.endpoint_id, open_until=state.open_until, now=now,
                                   lease_until=now + breaker.probe_lease):
            return _defer(message, queue, until=now + breaker.probe_lease, now=now)   # another delivery probes
        probe = True
    headers = signed_headers(message.webhook_id, now, message.body, endpoint.signing_secrets(now))
    result = sender.post(endpoint.url, headers, message.body)
    if on_attempt is not None:
        on_attempt(result)
    if breakers is not None and breaker is not None:
        change = _breaker_after(result.ok, probe, message, state, breakers, breaker, now)
        if change and on_breaker is not None:
            on_breaker(change)
    if result.ok:
        return "delivered"
    attempts = message.attempts + 1
    if attempts > len(schedule):
        queue.dead_letter(message.model_copy(update={"attempts": attempts, "last_error": result.detail[:500]}))
        return "dead_lettered"
    delay = max(0, int(schedule[attempts - 1]))
    retry = message.model_copy(update={"attempts": attempts, "not_before": now + delay,
                                       "last_error": result.detail[:500]})
    queue.send([retry], delay_seconds=min(MAX_SQS_DELAY, delay))
    return "retrying"


def _breaker_after(ok: bool, probe: bool, message: WebhookDeliveryMessage, state: EndpointBreaker,
                   breakers: Breakers, policy: BreakerPolicy, now: int) -> str | None:
    """The breaker after one attempt: a 2xx closes it (writes only when it was not already clean); a failed
    probe reopens it with a longer cool-down; the failure that makes `policy.failures` in a row opens it
    (once, however many attempts fail at the same time)."""
    tenant, endpoint = message.tenant, message.endpoint_id
    if ok:
        if state.failures or state.open_until or state.opens:
            breakers.close_breaker(tenant, endpoint)
            return "closed" if state.open_until else None
        return None
    if probe:
        opens = state.opens + 1
        if breakers.open_breaker(tenant, endpoint, until=now + policy.cooldown_after(opens), opens=opens,
                                 expect_opens=state.opens):
            return "reopened"
        return None
    counted = breakers.count_failure(tenant, endpoint)
    if counted is not None and counted.failures >= policy.failures and not counted.open_until:
        if breakers.open_breaker(tenant, endpoint, until=now + policy.cooldown_after(1), opens=1, expect_opens=0):
            return "opened"
    return None


def _defer(message: WebhookDeliveryMessage, queue: DeliveryQueue, *, until: int, now: int) -> str:
    """Not attempted (the endpoint's breaker is open): back on the queue until `until`, attempts unchanged;
    past the delivery's window it is dead-lettered instead, as its last attempt would have been."""
    if now >= message.window_ends_at:
        queue.dead_letter(message.model_copy(update={
            "last_error": (f"circuit open; last error: {message.last_error}" if message.last_error
                           else "circuit open")[:500]}))
        return "dead_lettered"
    until = min(until, message.window_ends_at)
    queue.send([message.model_copy(update={"not_before": until})],
               delay_seconds=min(MAX_SQS_DELAY, max(1, until - now)))
    return "deferred"


def parse_schedule(raw: str) -> tuple[int, ...]:
    """'5,300,1800' -> (5, 300, 1800): the delays before the 2nd, 3rd... attempt."""
    delays = tuple(int(p) for p in raw.split(",") if p.strip())
    if any(d < 0 for d in delays):
        raise ValueError("webhook retry delays are >= 0 seconds")
    return delays
