"""In-memory stand-ins for the batches domain's ports (no AWS in unit tests)."""
from __future__ import annotations

from support.memory import MemoryBatches  # noqa: F401  (the batches tests import it from here)

from batchgate.models.records import FileRecord


class MemoryFiles:
    def __init__(self):
        self.records: dict[tuple[str, str], FileRecord] = {}

    def add(self, tenant: str, file_id: str, purpose: str = "batch") -> None:
        self.records[(tenant, file_id)] = FileRecord(id=file_id, tenant=tenant, bytes=1, created_at=1,
                                                     filename="in.jsonl", purpose=purpose, s3_key="k")

    def get(self, tenant, file_id):
        return self.records.get((tenant, file_id))


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
