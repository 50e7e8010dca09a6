"""Status transitions: every published status change, and the check that the sequence is legal."""
from __future__ import annotations

import threading
import time

from batchgate.adapters import events
from batchgate.domain import status as st


class TransitionLog:
    """Every published status change, in publication order (each follows its conditional write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_batch: dict[str, list[str]] = {}

    def install(self, mp) -> None:
        original = events.EventPublisher.batch_status
        log = self

        def batch_status(self, tenant, batch_id, status, at=None, *rest):
            with log._lock:
                log.by_batch.setdefault(batch_id, []).append(status)
            return original(self, tenant, batch_id, status, at, *rest)

        mp.setattr(events.EventPublisher, "batch_status", batch_status)

    def of(self, batch_id: str) -> list[str]:
        with self._lock:
            return list(self.by_batch.get(batch_id, []))

    def settled(self, batch_id: str, final: str, timeout: float = 10.0) -> list[str]:
        """The batch's events once its final status has been published: each event follows its
        conditional write, so a client can see the new status a moment before the event exists."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.of(batch_id)
            if (seen and seen[-1] == final) or time.monotonic() >= deadline:
                return seen
            time.sleep(0.05)


def bad_transitions(statuses: list[str], final: str | None) -> list[str]:
    """Illegal steps in validating -> statuses..., plus a last status that is not the batch's."""
    seq = ["validating", *statuses]
    bad = [f"{a}->{b}" for a, b in zip(seq, seq[1:], strict=False) if not st.is_legal(a, b)]
    if final is not None and seq[-1] != final:
        bad.append(f"last event {seq[-1]} but status {final}")
    return bad
