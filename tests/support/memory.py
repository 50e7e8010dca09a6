"""In-memory BatchRepository for unit tests of the batches API and the engine (no AWS, no moto)."""
from __future__ import annotations

from collections import Counter

from batchgate.domain.ports import QuotaExceeded
from batchgate.models.records import BatchRecord


class MemoryBatches:
    """BatchRepository in memory: records kept as BatchRecords, status writes conditional as the store's."""

    def __init__(self, *records: BatchRecord):
        self.items: dict[tuple[str, str], BatchRecord] = {(r.tenant, r.id): r.model_copy() for r in records}
        self.idem: dict[tuple[str, str], dict] = {}
        self.counters: Counter = Counter()   # (tenant, "active" | "tokens:<model>") -> count, as the store's
        self.before_transition = None  # hook to simulate a racing writer

    def _take(self, key, amount, limit):
        if limit is not None and self.counters[key] + amount > limit:
            raise QuotaExceeded(limit, self.counters[key])
        self.counters[key] += amount

    def put_new(self, record: BatchRecord, *, active_limit=None):
        assert (record.tenant, record.id) not in self.items
        self._take((record.tenant, "active"), 1, active_limit)
        self.items[(record.tenant, record.id)] = record.model_copy(update={"quota_active": True})
        return self.items[(record.tenant, record.id)].model_copy()

    def reserve_tokens(self, tenant, batch_id, model, tokens, limit):
        item = self.items[(tenant, batch_id)]
        if item.status != "validating" or item.quota_tokens is not None:
            return
        self._take((tenant, f"tokens:{model}"), tokens, limit)
        self.items[(tenant, batch_id)] = item.model_copy(update={"quota_tokens": tokens, "quota_model": model})

    def get(self, tenant, batch_id, consistent=False):
        item = self.items.get((tenant, batch_id))
        return item.model_copy() if item else None

    def list(self, tenant, limit, after):
        ids = sorted((i for t, i in self.items if t == tenant), reverse=True)
        if after:
            ids = [i for i in ids if i < after]
        return [self.items[(tenant, i)].model_copy() for i in ids[:limit]], len(ids) > limit

    def transition(self, tenant, batch_id, to, *, allowed_from, timestamp_field, extra=None, at=None,
                   release_quota=False):
        if self.before_transition:
            hook, self.before_transition = self.before_transition, None
            hook()
        item = self.items.get((tenant, batch_id))
        if item is None or item.status not in allowed_from:
            return None
        moved = BatchRecord.model_validate({**item.model_dump(), "status": to, timestamp_field: at or 1,
                                            **(extra or {})})
        if release_quota and not item.quota_released:
            self.counters[(tenant, "active")] -= 1 if item.quota_active else 0
            self.counters[(tenant, f"tokens:{item.quota_model}")] -= item.quota_tokens or 0
            moved = moved.model_copy(update={"quota_released": True})
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

    def release_idempotency_key(self, tenant, key, batch_id):
        if self.idem.get((tenant, key), {}).get("batch_id") == batch_id:
            del self.idem[(tenant, key)]
