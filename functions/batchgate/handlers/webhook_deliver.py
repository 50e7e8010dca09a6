"""The webhook queue's consumer (ReportBatchItemFailures). A record is either a batch status event that
the EventBridge rule put there (fanned out into one delivery message per subscribed endpoint) or one
delivery (one attempt, then done, re-sent for a retry, or dead-lettered): domain/webhooks.py."""
from __future__ import annotations

import time
from typing import cast

import orjson
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

from batchgate.adapters.webhook_queue import WebhookQueue
from batchgate.adapters.webhook_sender import WebhookSender
from batchgate.adapters.webhook_store import WebhookStore
from batchgate.contract import Env, Metric
from batchgate.domain import webhooks
from batchgate.models.webhooks import StatusEventMessage, WebhookDeliveryMessage
from batchgate.observability import count, lambda_handler, log_keys, logger, webhook_delivery
from batchgate.settings import get_settings


def _ports() -> tuple[WebhookStore, WebhookQueue, WebhookSender, tuple[int, ...]]:
    s = get_settings()
    return (WebhookStore(s.webhooks_table), WebhookQueue(s.webhook_queue_url, s.webhook_dlq_url),
            WebhookSender(s.webhook_timeout_seconds, s.webhook_allow_loopback),
            webhooks.parse_schedule(s.webhook_retry_schedule))


def _breaker() -> webhooks.BreakerPolicy:
    s = get_settings()
    return webhooks.parse_breaker(s.webhook_breaker, s.webhook_timeout_seconds)


def breaker_metrics(change: str) -> None:
    """WebhookBreaker by event: opened, reopened (a failed probe), closed; deferrals are WebhookOutcomes
    `deferred`."""
    count(Metric.WEBHOOK_BREAKER, "event", change)
    logger.info("webhook breaker", extra={"breaker": change})


def attempt_metrics(result: webhooks.AttemptResult) -> None:
    """Per POST, dimension (service): WebhookDeliveries 1, WebhookFailures 1 when it failed (no answer or not
    2xx), WebhookLatency in ms (the operations dashboard's webhook widgets read these names)."""
    webhook_delivery(ok=result.ok, latency_ms=result.latency_ms)


def record_handler(record: SqsRecordModel) -> str:
    store, queue, sender, schedule = _ports()
    body = orjson.loads(cast(str, record.body))
    if isinstance(body, dict) and "detail-type" in body:
        event = StatusEventMessage.model_validate(body)
        detail = event.detail
        log_keys(batch_id=detail.batch_id, tenant=detail.tenant)
        deliveries = webhooks.fan_out(detail.tenant, detail.batch_id, detail.status, int(event.time.timestamp()),
                                      store)
        queue.send(deliveries)
        count("WebhookEvents", "outcome", "fanned_out" if deliveries else "no_endpoint")
        return f"fanned out to {len(deliveries)}"
    message = WebhookDeliveryMessage.model_validate(body)
    log_keys(batch_id=webhooks.batch_of(message.body), tenant=message.tenant, webhook_id=message.webhook_id,
             endpoint_id=message.endpoint_id)
    outcome = webhooks.deliver(message, endpoints=store, queue=queue, sender=sender, schedule=schedule,
                               now=int(time.time()), on_attempt=attempt_metrics, breakers=store,
                               breaker=_breaker(), on_breaker=breaker_metrics)
    if outcome != "waiting":
        logger.info("webhook attempt", extra={"outcome": outcome, "attempts": message.attempts + 1,
                                              "event_type": message.event_type})
        count(Metric.WEBHOOK_OUTCOMES, "outcome", outcome)
    return outcome


@lambda_handler(requires=(Env.WEBHOOKS_TABLE, Env.WEBHOOK_QUEUE_URL, Env.WEBHOOK_DLQ_URL))
def handler(event: dict, context) -> PartialItemFailureResponse:
    # A processor per invocation: local mode runs invocations side by side in threads of one process.
    processor = BatchProcessor(event_type=EventType.SQS, model=SqsRecordModel)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
