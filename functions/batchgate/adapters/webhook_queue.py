"""The webhook queue (fan-out events and deliveries) and its dead-letter queue (deliveries that used up
every attempt; `batchgate webhooks redrive` moves them back).

Each delivery carries its endpoint as MessageGroupId, which makes the standard queue an SQS fair queue:
an endpoint with a large backlog (a dead one being retried) does not delay the deliveries of quiet
endpoints (as adapters/chunk_queue.py does with tenants); moto stores the group and ignores it."""
from __future__ import annotations

from collections.abc import Sequence

from batchgate import aws
from batchgate.adapters.sqs import group_id, send_batches
from batchgate.models.webhooks import WebhookDeliveryMessage

MAX_DELAY_SECONDS = 900


class WebhookQueue:
    def __init__(self, queue_url: str, dead_letter_url: str):
        if not queue_url or not dead_letter_url:
            raise ValueError("WebhookQueue needs BATCHGATE_WEBHOOK_QUEUE_URL and BATCHGATE_WEBHOOK_DLQ_URL")
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url

    def send(self, messages: Sequence[WebhookDeliveryMessage], delay_seconds: int = 0) -> None:
        """SendMessageBatch, 10 per call, re-sending what SQS reports failed; an error fails the caller's
        record, which SQS then redelivers (the ids are fixed, so a repeat is the same delivery)."""
        delay = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        send_batches(self.queue_url, [{"MessageBody": m.model_dump_json(), "DelaySeconds": delay,
                                       "MessageGroupId": group_id(m.endpoint_id)} for m in messages],
                     "webhook deliveries")

    def dead_letter(self, message: WebhookDeliveryMessage) -> None:
        aws.client("sqs").send_message(QueueUrl=self.dead_letter_url, MessageBody=message.model_dump_json())
