"""Test doubles shared by the webhook unit tests."""
from __future__ import annotations

from batchgate.models.webhooks import WebhookDeliveryMessage


class Queue:
    """The webhook queue's two sends, recorded: (message, delay) and dead letters."""

    def __init__(self):
        self.sent: list[tuple[WebhookDeliveryMessage, int]] = []
        self.dead: list[WebhookDeliveryMessage] = []

    def send(self, messages, delay_seconds=0):
        self.sent.extend((m, delay_seconds) for m in messages)

    def dead_letter(self, message):
        self.dead.append(message)

    def take(self) -> list[tuple[WebhookDeliveryMessage, int]]:
        """What was sent since the last take (as SQS would hand it back)."""
        taken, self.sent = self.sent, []
        return taken
