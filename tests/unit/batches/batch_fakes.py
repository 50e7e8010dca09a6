"""In-memory stand-ins for the batches domain's ports (no AWS in unit tests)."""
from __future__ import annotations

from batchgate.models.records import BatchRecord


class MemoryFiles:
    def __init__(self):
        self.records: dict[tuple[str, str], dict] = {}

    def add(self, tenant: str, file_id: str, purpose: str = "batch") -> None:
        self.records[(tenant, file_id)] = {"id": file_id, "purpose": purpose}

    def get(self, tenant, file_id):
        return self.records.get((tenant, file_id))


class MemoryBatches:
    """BatchRepository in memory: records kept as BatchRecords, status writes conditional as the store's."""

    def __init__(self):
        self.items: dict[tuple[str, str], BatchRecord] = {}
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


class MemoryWorkflow:
    def __init__(self, fail_start: bool = False):
        self.started: list[tuple[str, str]] = []
        self.failed_tokens: list[tuple[str, str, str]] = []
        self.fail_start = fail_start

    def start(self, batch_id, tenant):
        if self.fail_start:
            raise RuntimeError("states unavailable")
        self.started.append((batch_id, tenant))
        return f"arn:execution:{batch_id}"

    def fail_task(self, token, error, cause):
        self.failed_tokens.append((token, error, cause))
        return True
