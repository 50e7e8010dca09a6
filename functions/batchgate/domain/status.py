"""The batch lifecycle: which status may follow which, and the timestamp each one sets."""
from __future__ import annotations

from typing import Literal

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed",
                      "expired", "cancelling", "cancelled"]

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
