"""The SQS chunk queue: pointer messages only (`ChunkMessage`), never request bodies.

Each message carries its tenant as MessageGroupId, which makes the standard queue an SQS fair queue:
when one tenant holds a large share of the messages in flight or of the workers' time, SQS delivers
the other tenants' messages first (issue 10, fairness). Ordering and delivery are otherwise unchanged;
moto stores the group and ignores it."""
from __future__ import annotations

import math
from collections.abc import Iterable

from batchgate import aws
from batchgate.adapters.sqs import group_id, send_batches
from batchgate.models.engine import ChunkMessage

MAX_DELAY_SECONDS = 900


class ChunkQueue:
    def __init__(self, queue_url: str):
        self.queue_url = queue_url

    def send(self, message: ChunkMessage, delay_seconds: float = 0) -> None:
        """Delays are whole seconds, 0..900 (SQS's maximum); a longer wait comes back early, finds the
        reason to wait still there and is delayed again."""
        delay = max(0, min(MAX_DELAY_SECONDS, math.ceil(delay_seconds)))
        aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json(),
                                       DelaySeconds=delay, MessageGroupId=group_id(message.tenant))

    def send_all(self, messages: Iterable[ChunkMessage]) -> int:
        """SendMessageBatch, 10 per call, re-sending the entries SQS reports as failed."""
        entries = [{"MessageBody": m.model_dump_json(), "MessageGroupId": group_id(m.tenant)} for m in messages]
        send_batches(self.queue_url, entries, "chunk messages")
        return len(entries)
