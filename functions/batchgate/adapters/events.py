"""Status changes as EventBridge events (source `batchgate`, detail-type `batch.<status>`).

The detail (schema: docs/events/batch-status.schema.json) is `{batch_id, tenant, status, at, batch}`: `batch` is the
Batch object exactly as GET /v1/batches/{id} returns it, so a consumer acts on an event (a terminal one
carries the output and error file ids, counts and usage) without calling back. An EventBridge entry is at
most 256 KB: a batch whose validation errors would not fit carries the first ones only and
`errors_truncated: true` (the full list stays on GET /v1/batches/{id}).
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from batchgate import aws
from batchgate.models.batches import batch_object
from batchgate.models.records import BatchRecord
from batchgate.observability import logger

SOURCE = "batchgate"
# EventBridge counts Source, DetailType, Detail, Resources and the bus name against 256 KB per entry;
# the detail keeps well under it.
MAX_DETAIL_BYTES = 200_000


def status_detail(tenant: str, batch_id: str, status: str, at: int,
                  record: BatchRecord | None = None) -> dict[str, Any]:
    """The event's detail, at most MAX_DETAIL_BYTES of JSON."""
    detail: dict[str, Any] = {"batch_id": batch_id, "tenant": tenant, "status": status, "at": at}
    if record is None:
        return detail
    batch = batch_object(record)
    detail["batch"] = batch
    errors = (batch.get("errors") or {}).get("data") or []
    if errors and len(orjson.dumps(detail)) > MAX_DETAIL_BYTES:
        # Only the errors list is unbounded (metadata and everything else are small): keep the longest
        # prefix that fits, found by bisection on its serialized size.
        others = len(orjson.dumps({**detail, "batch": {**batch, "errors": {"object": "list", "data": []}},
                                   "errors_truncated": True}))
        sizes = [len(orjson.dumps(e)) + 1 for e in errors]
        keep, used = 0, others
        while keep < len(errors) and used + sizes[keep] <= MAX_DETAIL_BYTES:
            used += sizes[keep]
            keep += 1
        batch["errors"] = {"object": "list", "data": errors[:keep]}
        detail["errors_truncated"] = True
    return detail


class EventPublisher:
    def __init__(self, bus_name: str | None):
        """`None` publishes nothing (benches and tests without a bus). An empty name is a deployment
        that lost its bus: refused, so status changes are never dropped without a word."""
        if bus_name is not None and not bus_name:
            raise ValueError("EventPublisher needs the event bus name (BATCHGATE_EVENT_BUS)")
        self.bus_name = bus_name

    def batch_status(self, tenant: str, batch_id: str, status: str, at: int | None = None,
                     record: BatchRecord | None = None) -> None:
        """Publish the status change; `record` is the batch as stored after it (the event's `batch`)."""
        if not self.bus_name:
            return
        detail: dict[str, Any] = {"batch_id": batch_id, "tenant": tenant, "status": status}
        try:
            detail = status_detail(tenant, batch_id, status, at if at is not None else int(time.time()), record)
            resp = aws.client("events").put_events(Entries=[{
                "Source": SOURCE, "DetailType": f"batch.{status}",
                "Detail": orjson.dumps(detail).decode(), "EventBusName": self.bus_name,
                "Resources": [batch_id]}])
            if resp.get("FailedEntryCount"):
                logger.warning("event not published", extra={"event": _brief(detail), "resp": resp})
        except Exception:  # an event must never undo a status change that already happened
            logger.exception("event publish failed", extra={"event": _brief(detail)})


def _brief(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail without the batch object, for a log line."""
    return {k: v for k, v in detail.items() if k != "batch"}
