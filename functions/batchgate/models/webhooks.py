"""Webhook shapes: the endpoint a tenant registered (`WebhookEndpointRecord`, the webhooks table) and one
delivery of one event to one endpoint (`WebhookDeliveryMessage`, the webhook queue and its DLQ)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

WebhookEventType = Literal["batch.completed", "batch.failed", "batch.cancelled", "batch.expired"]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = (
    "batch.completed", "batch.failed", "batch.cancelled", "batch.expired")


class EndpointBreaker(BaseModel):
    """An endpoint's circuit breaker (domain/webhooks.py), kept on its item in the webhooks table as
    `breaker_*` attributes. Closed: `open_until` 0. Open: `open_until` > now (deliveries wait). Half-open:
    `open_until` <= now, one probe at a time (`probe_until`: the probe's lease)."""
    failures: int = 0       # consecutive failed attempts (any delivery); a 2xx resets it
    open_until: int = 0     # epoch seconds
    opens: int = 0          # opens since the last success: the cool-down doubles with each
    probe_until: int = 0    # epoch seconds: a probe is in flight until then


class WebhookEndpointRecord(BaseModel):
    """One endpoint of one tenant. `secret` (and `previous_secret` during a rotation's grace period) is
    kept in clear because Standard Webhooks signs with it; the table is encrypted at rest and only the
    delivery function and the operator's CLI read it. Neither its repr nor a validation error shows a secret
    (errors would reach the logs)."""
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    id: str
    tenant: str
    url: str
    events: list[WebhookEventType]
    secret: str = Field(repr=False)
    previous_secret: str | None = Field(None, repr=False)
    previous_secret_expires_at: int | None = None
    created_at: int
    # Delivery state, not configuration: never written by `put`, never shown.
    breaker: EndpointBreaker = Field(default_factory=EndpointBreaker, exclude=True, repr=False)

    def signing_secrets(self, now: int) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous one while its grace
        period lasts (the `webhook-signature` header carries one signature per secret, as the spec allows)."""
        secrets = [self.secret]
        if self.previous_secret and (self.previous_secret_expires_at or 0) > now:
            secrets.append(self.previous_secret)
        return secrets

    def public(self) -> dict[str, Any]:
        """What may be shown after create: everything but the secrets."""
        return {"id": self.id, "tenant": self.tenant, "url": self.url, "events": list(self.events),
                "created_at": self.created_at, "rotating": self.previous_secret is not None}


class WebhookDeliveryMessage(BaseModel):
    """One event for one endpoint. `webhook_id` and `body` are fixed when the event is fanned out, so every
    attempt sends the same `webhook-id` and the same bytes (receivers dedupe on the id)."""
    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook.delivery"] = "webhook.delivery"
    tenant: str
    endpoint_id: str
    webhook_id: str
    event_type: WebhookEventType
    body: str
    attempts: int = Field(0, ge=0)          # attempts made so far
    not_before: int = 0                     # epoch seconds: the next attempt waits until then (hops of <= 900 s)
    last_error: str | None = None
    # epoch seconds: set at its first step to now + the window (24 h); a delivery the breaker keeps
    # deferring (no attempt used) is dead-lettered once it is over (`webhooks redrive` resets it to 0)
    window_ends_at: int = 0


class StatusEventDetail(BaseModel):
    """What this consumer relies on in a `batch.<status>` event's detail (publishers may add more)."""
    batch_id: str = Field(min_length=1, max_length=128)
    tenant: str = Field(min_length=1, max_length=128)
    status: str = Field(max_length=32)


class StatusEventMessage(BaseModel):
    """A `batch.<status>` EventBridge event as the rule puts it on the webhook queue: the event's own `time`
    is the webhook's `created_at`."""
    detail_type: str = Field(alias="detail-type")
    time: datetime
    detail: StatusEventDetail
