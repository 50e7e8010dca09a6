"""The batch lifecycle: which status may follow which, and the timestamp each one sets.

Every status change goes through `transition`, which applies this rule; the store only performs the
conditional write it is given (and publishes the change as an event when it won).
"""
from __future__ import annotations

from typing import Any

from batchgate.domain.ports import BatchRepository
from batchgate.models.records import BatchRecord, BatchStatus

# to-status -> statuses it may be entered from
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "in_progress": ("validating",),
    # A batch fails at validation, or when a step breaks past its retries (every batch ends).
    "failed": ("validating", "in_progress", "finalizing"),
    "finalizing": ("in_progress",),
    "completed": ("finalizing",),
    "cancelling": ("validating", "in_progress"),
    "cancelled": ("cancelling",),
    "expired": ("in_progress", "validating"),
}

TIMESTAMP_FIELD: dict[str, str] = {
    "in_progress": "in_progress_at",
    "failed": "failed_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
    "expired": "expired_at",
}

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress"})


def is_legal(frm: str, to: str) -> bool:
    return frm in ALLOWED_FROM.get(to, ())


def transition(batches: BatchRepository, tenant: str, batch_id: str, to: BatchStatus, *,
               extra: dict[str, Any] | None = None, at: int | None = None) -> BatchRecord | None:
    """Move the batch to `to` from any status the lifecycle allows before it; set its timestamp and
    `extra`. None when another writer moved the batch first (re-read and decide again). A batch that
    ends gives back its share of its tenant's quotas in the same write."""
    return batches.transition(tenant, batch_id, to, allowed_from=ALLOWED_FROM[to],
                              timestamp_field=TIMESTAMP_FIELD[to], extra=extra, at=at,
                              release_quota=to in TERMINAL)
