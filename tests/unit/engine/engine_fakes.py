"""In-memory stand-ins for the engine's ports (domain/ports.py) as Dispatch and Finalize call them:
no AWS, no moto. Each keeps what was done to it for the test to read."""
from __future__ import annotations

from support.memory import MemoryBatches  # noqa: F401  (re-exported for the engine tests)

from batchgate.models.engine import ChunkRecord, SegmentRecord
from batchgate.models.records import FileRecord


class MemoryWorkflow:
    def __init__(self):
        self.failed: list[tuple[str, str, str]] = []

    def fail_task(self, token, error, cause):
        self.failed.append((token, error, cause))
        return True


class MemoryQueue:
    def __init__(self):
        self.sent: list = []

    def send_all(self, messages):
        messages = list(messages)
        self.sent.extend(messages)
        return len(messages)


class MemoryChunks:
    def __init__(self, *chunks: ChunkRecord):
        self.items = {c.n: c for c in chunks}

    def list(self, batch_id):
        return [self.items[n] for n in sorted(self.items)]

    def seal(self, batch_id, n, now):
        c = self.items[n]
        if c.state == "open" and (c.lease_until is None or c.lease_until < now):
            self.items[n] = c.model_copy(update={"state": "sealed"})
        return self.items[n].state != "open"


class MemorySegments:
    """Committed segments by (chunk, start line), with their output/error bytes."""

    def __init__(self):
        self.records: dict[tuple[int, int], SegmentRecord] = {}
        self.data: dict[tuple[int, int, str], bytes] = {}
        self.deleted = False

    def add(self, chunk: int, seg: SegmentRecord, out: bytes = b"", err: bytes = b"") -> None:
        self.records[(chunk, seg.start_line)] = seg
        self.data[(chunk, seg.start_line, "out.jsonl")] = out
        self.data[(chunk, seg.start_line, "err.jsonl")] = err

    def get_record(self, batch_id, chunk, start_line):
        return self.records.get((chunk, start_line))

    def stream_data(self, batch_id, chunk, seg, kind):
        yield self.data[(chunk, seg.start_line, kind)]

    def get_ahead(self, batch_id, chunk):
        return {}

    def delete_batch(self, batch_id):
        self.deleted = True


class MemoryWriter:
    def __init__(self, files: MemoryFiles, key: str):
        self.files, self.key, self.buf = files, key, b""

    def write(self, data):
        self.buf += data

    def close(self):
        self.files.objects[self.key] = self.buf
        return len(self.buf)

    def abort(self):
        self.buf = b""


class MemoryFiles:
    """Objects by key (the input file among them) and the file records Finalize registers."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = dict(objects)
        self.registered: dict[str, FileRecord] = {}

    def file_key(self, tenant, file_id):
        return f"files/{tenant}/{file_id}"

    def get(self, tenant, file_id):
        return self.registered.get(file_id)

    def read_range(self, s3_key, start, end_exclusive):
        return self.objects[s3_key][start:end_exclusive]

    def writer(self, key, *, tagging=None):
        return MemoryWriter(self, key)

    def register(self, tenant, *, file_id, **fields):
        self.registered[file_id] = FileRecord(id=file_id, tenant=tenant, **fields)
        return self.registered[file_id]
