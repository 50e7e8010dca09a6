"""In-memory BatchRepository for unit tests of the batches API and the engine (no AWS, no moto)."""
from __future__ import annotations

from batchgate.models.records import BatchRecord


class MemoryBatches:
    """BatchRepository in memory: records kept as BatchRecords, status writes conditional as the store's."""

    def __init__(self, *records: BatchRecord):
        self.items: dict[tuple[str, str], BatchRecord] = {(r.tenant, r.id): r.model_copy() for r in records}
        self.idem: dict[tuple[str, str], dict] = {}
        self.before_transition = None  # hook to simulate a racing writer

    def put_new(self, record: BatchRecord):
        assert (record.tenant, record.id) not in self.items
        self.items[(record.tenant, record.id)] = record.model_copy()

    def get(self, tenant, batch_id, consistent=False):
        item = self.items.get((tenant, batch_id))
        return item.model_copy() if item else None

    def list(self, tenant, limit, after):
        ids = sorted((i for t, i in self.items if t == tenant), reverse=True)
        if after:
            ids = [i for i in ids if i < after]
        return [self.items[(tenant, i)].model_copy() for i in ids[:limit]], len(ids) > limit

    def transition(self, tenant, batch_id, to, *, allowed_from, timestamp_field, extra=None, at=None):
        if self.before_transition:
            hook, self.before_transition = self.before_transition, None
            hook()
        item = self.items.get((tenant, batch_id))
        if item is None or item.status not in allowed_from:
            return None
        moved = BatchRecord.model_validate({**item.model_dump(), "status": to, timestamp_field: at or 1,
                                            **(extra or {})})
        self.items[(tenant, batch_id)] = moved
        return moved.model_copy()

    def update_fields(self, tenant, batch_id, fields, *, require_status=None):
        item = self.items.get((tenant, batch_id))
        if item is None or (require_status and item.status not in require_status):
            return False
        self.items[(tenant, batch_id)] = BatchRecord.model_validate({**item.model_dump(), **fields})
        return True

    def claim_idempotency_key(self, tenant, key, batch_id, fingerprint, expires_at):
        return self.idem.setdefault((tenant, key), {"batch_id": batch_id, "fingerprint": fingerprint})
