"""The SQS chunk queue: pointer messages only (`ChunkMessage`), never request bodies.

Each message carries its tenant as MessageGroupId, which makes the standard queue an SQS fair queue:
when one tenant holds a large share of the messages in flight or of the workers' time, SQS delivers
the other tenants' messages first (issue 10, fairness). Ordering and delivery are otherwise unchanged;
moto stores the group and ignores it."""
from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterable

from batchgate import aws
from batchgate.models.engine import ChunkMessage

_ATTEMPTS = 5
MAX_DELAY_SECONDS = 900


# MessageGroupId: 1-128 characters, alphanumerics and punctuation (the SQS API reference).
_GROUP_ID = re.compile(r"[A-Za-z0-9!-/:-@\[-`{-~]{1,128}")


def group_id(tenant: str) -> str:
    """The tenant's message group: the tenant itself, or a digest of it when SQS would refuse it."""
    return tenant if _GROUP_ID.fullmatch(tenant) else hashlib.sha256(tenant.encode()).hexdigest()


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
        messages = list(messages)
        for start in range(0, len(messages), 10):
            entries = {str(i): m for i, m in enumerate(messages[start:start + 10])}
            for attempt in range(_ATTEMPTS):
                resp = aws.client("sqs").send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": k, "MessageBody": m.model_dump_json(), "MessageGroupId": group_id(m.tenant)}
                             for k, m in entries.items()])
                entries = {f["Id"]: entries[f["Id"]] for f in resp.get("Failed", [])}
                if not entries:
                    break
                time.sleep(0.2 * 2 ** attempt)
            else:
                raise RuntimeError(f"SQS refused {len(entries)} chunk messages")
        return len(messages)
