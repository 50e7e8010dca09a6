"""The SQS chunk queue: pointer messages only (`ChunkMessage`), never request bodies."""
from __future__ import annotations

import math
import time
from collections.abc import Iterable

from batchgate import aws
from batchgate.models.engine import ChunkMessage

_ATTEMPTS = 5
MAX_DELAY_SECONDS = 900


class ChunkQueue:
    def __init__(self, queue_url: str):
        self.queue_url = queue_url

    def send(self, message: ChunkMessage, delay_seconds: float = 0) -> None:
        """Delays are whole seconds, 0..900 (SQS's maximum); a longer wait comes back early, finds the
        reason to wait still there and is delayed again."""
        delay = max(0, min(MAX_DELAY_SECONDS, math.ceil(delay_seconds)))
        aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json(),
                                       DelaySeconds=delay)

    def send_all(self, messages: Iterable[ChunkMessage]) -> int:
        """SendMessageBatch, 10 per call, re-sending the entries SQS reports as failed."""
        messages = list(messages)
        for start in range(0, len(messages), 10):
            entries = {str(i): m for i, m in enumerate(messages[start:start + 10])}
            for attempt in range(_ATTEMPTS):
                resp = aws.client("sqs").send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": k, "MessageBody": m.model_dump_json()} for k, m in entries.items()])
                entries = {f["Id"]: entries[f["Id"]] for f in resp.get("Failed", [])}
                if not entries:
                    break
                time.sleep(0.2 * 2 ** attempt)
            else:
                raise RuntimeError(f"SQS refused {len(entries)} chunk messages")
        return len(messages)
