"""The batch engine's real adapters against a moto server, with just enough state to run one step:
a batch item, its input file, its chunk items (what Validate would have written)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from batchgate import ids
from batchgate.models.engine import ChunkSpec
from batchgate.models.records import BatchRecord

TENANT = "bench"
TABLE = "state"
BUCKET = "bucket"


@dataclass
class RecordingWorkflow:
    """Stands in for the state machine's task token (no execution is waiting in these runs)."""
    successes: list = field(default_factory=list)

    def succeed_task(self, token: str, output: dict) -> bool:
        self.successes.append(output)
        return len(self.successes) == 1

    def fail_task(self, token: str, error: str, cause: str) -> bool:
        return True


@dataclass
class RecordingQueue:
    sent: list = field(default_factory=list)

    def send(self, message, delay_seconds: float = 0) -> None:
        self.sent.append(message)


def stores():
    from batchgate.adapters.batch_store import BatchStore
    from batchgate.adapters.chunk_store import ChunkStore
    from batchgate.adapters.events import EventPublisher
    from batchgate.adapters.file_store import FileStore
    from batchgate.adapters.segments import SegmentStore
    return (BatchStore(TABLE, EventPublisher(None)), ChunkStore(TABLE), SegmentStore(BUCKET),
            FileStore(TABLE, BUCKET))


def chunk_specs(line_ends: list[int], per_chunk: int) -> list[ChunkSpec]:
    """Chunks of `per_chunk` lines given each line's end offset (as Validate cuts them)."""
    specs, start_byte = [], 0
    for n, first in enumerate(range(0, len(line_ends), per_chunk)):
        end = min(first + per_chunk, len(line_ends))
        specs.append(ChunkSpec(n=n, first_line=first, end_line=end, byte_start=start_byte,
                               byte_end=line_ends[end - 1]))
        start_byte = line_ends[end - 1]
    return specs


def new_batch(data: bytes, per_chunk: int, *, status: str = "in_progress",
              window: int = 86400) -> tuple[str, list[ChunkSpec]]:
    """Upload `data` as the input file and write a batch + its chunk manifest; returns (id, chunks)."""
    batches, chunks, _, files = stores()
    now = int(time.time())
    file_id, batch_id = ids.file_id(), ids.batch_id(now)
    key = files.file_key(TENANT, file_id)
    files.put_bytes(key, data)
    files.register(TENANT, file_id=file_id, filename="input.jsonl", purpose="batch", bytes=len(data),
                   s3_key=key, created_at=now, expires_at=None)
    ends, pos = [], 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        ends.append(pos)
    specs = chunk_specs(ends, per_chunk)
    chunks.put_all(batch_id, TENANT, specs, None)
    batches.put_new(BatchRecord(
        id=batch_id, tenant=TENANT, endpoint="/v1/chat/completions", model="gpt-4o-mini",
        input_file_id=file_id, input_s3_key=key, completion_window="24h", status=status, created_at=now,
        expires_at=now + window, total=len(ends), chunk_count=len(specs), task_token=f"token-{batch_id}"))
    return batch_id, specs
