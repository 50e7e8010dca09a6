"""Status changes as EventBridge events (source `batchgate`, detail-type `batch.<status>`)."""
from __future__ import annotations

import time

import orjson

from batchgate import aws
from batchgate.observability import logger


class EventPublisher:
    def __init__(self, bus_name: str | None):
        """`None` publishes nothing (benches and tests without a bus). An empty name is a deployment
        that lost its bus: refused, so status changes are never dropped without a word."""
        if bus_name is not None and not bus_name:
            raise ValueError("EventPublisher needs the event bus name (BATCHGATE_EVENT_BUS)")
        self.bus_name = bus_name

    def batch_status(self, tenant: str, batch_id: str, status: str, at: int | None = None) -> None:
        if not self.bus_name:
            return
        detail = {"batch_id": batch_id, "tenant": tenant, "status": status,
                  "at": at if at is not None else int(time.time())}
        try:
            resp = aws.client("events").put_events(Entries=[{
                "Source": "batchgate", "DetailType": f"batch.{status}",
                "Detail": orjson.dumps(detail).decode(), "EventBusName": self.bus_name,
                "Resources": [batch_id]}])
            if resp.get("FailedEntryCount"):
                logger.warning("event not published", extra={"detail": detail, "resp": resp})
        except Exception:  # an event must never undo a status change that already happened
            logger.exception("event publish failed", extra={"detail": detail})
