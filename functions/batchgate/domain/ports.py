"""The ports of the batch engine and the batches API: what the domain asks of storage, the workflow,
the queue and the upstream, and the result types it owns. Adapters (`adapters/`) implement them;
the domain never imports an adapter (an import-linter contract in `pyproject.toml` keeps it so).

Implementations: BatchRepository = adapters/batch_store.BatchStore, ChunkRepository =
adapters/chunk_store.ChunkStore, SegmentRepository = adapters/segments.SegmentStore, EngineFiles =
adapters/file_store.FileStore, WorkflowPort = adapters/workflow.Workflow, ChunkQueuePort =
adapters/chunk_queue.ChunkQueue, Upstream = adapters/upstream.UpstreamClient, UpstreamCapPort =
adapters/upstream_cap.UpstreamCap.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchgate.models.engine import AnsweredLine, ChunkMessage, ChunkRecord, ChunkSpec, SegmentRecord
from batchgate.models.records import BatchRecord, FileRecord


# -- state ------------------------------------------------------------------------------------
class QuotaExceeded(Exception):
    """A tenant's counter is at its limit: nothing was stored or counted."""

    def __init__(self, limit: int, current: int):
        super().__init__(f"limit {limit}, current {current}")
        self.limit, self.current = limit, current


class BatchRepository(Protocol):
    def put_new(self, record: BatchRecord, *, active_limit: int | None = None) -> BatchRecord:
        """Store the batch and count it among its tenant's active batches (QuotaExceeded at the limit)."""
        ...
    def get(self, tenant: str, batch_id: str, consistent: bool = False) -> BatchRecord | None: ...
    def list(self, tenant: str, limit: int, after: str | None) -> tuple[list[BatchRecord], bool]: ...
    def transition(self, tenant: str, batch_id: str, to: str, *, allowed_from: Iterable[str],
                   timestamp_field: str, extra: dict[str, Any] | None = None,
                   at: int | None = None, release_quota: bool = False) -> BatchRecord | None:
        """`release_quota`: the same write gives back what the batch holds of its tenant's quotas."""
        ...
    def update_fields(self, tenant: str, batch_id: str, fields: dict[str, Any], *,
                      require_status: Iterable[str] | None = None) -> bool: ...
    def reserve_tokens(self, tenant: str, batch_id: str, model: str | None, tokens: int,
                       limit: int | None) -> None:
        """Count a validating batch's tokens as enqueued for `model`, once (QuotaExceeded over `limit`)."""
        ...
    def claim_idempotency_key(self, tenant: str, key: str, batch_id: str, fingerprint: str,
                              expires_at: int) -> dict[str, Any]: ...
    def release_idempotency_key(self, tenant: str, key: str, batch_id: str) -> None: ...


class ChunkRepository(Protocol):
    def put_all(self, batch_id: str, tenant: str, chunks: Iterable[ChunkSpec], ttl: int | None) -> None: ...
    def get(self, batch_id: str, n: int) -> ChunkRecord | None: ...
    def list(self, batch_id: str) -> list[ChunkRecord]: ...
    def claim(self, batch_id: str, n: int, owner: str, lease_until: float, now: float) -> ChunkRecord | None: ...
    def release(self, batch_id: str, n: int, owner: str) -> None: ...
    def seal(self, batch_id: str, n: int, now: float) -> bool: ...
    def commit_segment(self, tenant: str, batch_id: str, chunk: ChunkRecord, owner: str,
                       seg: SegmentRecord, *, release: bool) -> bool: ...


class SegmentRepository(Protocol):
    def get_record(self, batch_id: str, chunk: int, start_line: int) -> SegmentRecord | None: ...
    def put_data(self, batch_id: str, chunk: int, start_line: int, out: bytes, err: bytes,
                 writer: str = "") -> None: ...
    def put_record(self, batch_id: str, chunk: int, seg: SegmentRecord) -> bool: ...
    def put_ahead(self, batch_id: str, chunk: int, answers: dict[int, AnsweredLine]) -> None: ...
    def get_ahead(self, batch_id: str, chunk: int) -> dict[int, AnsweredLine]: ...
    def stream_data(self, batch_id: str, chunk: int, seg: SegmentRecord, kind: str) -> Iterator[bytes]: ...
    def delete_batch(self, batch_id: str) -> None: ...


class FileWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> int: ...
    def abort(self) -> None: ...


class Readable(Protocol):
    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class EngineFiles(Protocol):
    """What the engine needs of the file store: input bytes by range, result files written and registered."""
    def file_key(self, tenant: str, file_id: str) -> str: ...
    def get(self, tenant: str, file_id: str) -> FileRecord | None: ...
    def open_stream(self, record: FileRecord) -> Readable: ...
    def read_range(self, s3_key: str, start: int, end_exclusive: int) -> bytes: ...
    def writer(self, key: str, *, tagging: str | None = None) -> FileWriter: ...
    def register(self, tenant: str, *, file_id: str, filename: str, purpose: str, bytes: int,
                 s3_key: str, created_at: int, expires_at: int | None) -> FileRecord: ...


# -- the workflow and the queue ---------------------------------------------------------------
class WorkflowPort(Protocol):
    def start(self, batch_id: str, tenant: str) -> str: ...
    def fail_task(self, token: str, error: str, cause: str) -> bool: ...
    def succeed_task(self, token: str, output: dict[str, Any]) -> bool: ...


class ChunkQueuePort(Protocol):
    def send(self, message: ChunkMessage, delay_seconds: float = 0) -> None: ...
    def send_all(self, messages: Iterable[ChunkMessage]) -> int: ...


# -- the upstream -----------------------------------------------------------------------------
@dataclass(frozen=True)
class UpstreamAnswer:
    """An HTTP answer from the model server (any status, after retries)."""
    status_code: int
    request_id: str
    body: Any                      # parsed JSON (for usage), or the text when it is not JSON
    raw_json: bytes | None = None  # the JSON body as it came, on one line (what the result carries)


@dataclass(frozen=True)
class UpstreamFailure:
    """No HTTP answer the line can carry: it failed at the transport, or the answer was refused unread
    (`response_too_large`: longer than the upstream's `max_answer_bytes`). Either way an error line."""
    code: str       # "upstream_error" | "request_timeout" | "response_too_large"
    message: str


LATENCY_SAMPLES = 99  # below the 100 values of a metric CloudWatch takes per EMF document (observability.MAX_SAMPLES)


@dataclass(slots=True)
class UpstreamTally:
    """What one chunk run's upstream did, summed as it goes (cheap per request) and emitted once per run
    by the worker: retries, 429 answers, and a uniform sample of request latencies."""
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def request(self, latency_ms: float, status: int | None) -> None:
        self.requests += 1
        if status == 429:
            self.throttled += 1
        if len(self.latencies_ms) < LATENCY_SAMPLES:
            self.latencies_ms.append(latency_ms)
        else:  # reservoir sampling: every request equally likely to be in the sample
            slot = random.randrange(self.requests)
            if slot < LATENCY_SAMPLES:
                self.latencies_ms[slot] = latency_ms


class Upstream(Protocol):
    name: str            # the upstream's name in contract.UpstreamConfig (a metric dimension)
    tally: UpstreamTally  # this run's requests, retries, 429s and latencies

    @property
    def concurrency(self) -> int:
        """How many lines a chunk run keeps in flight on this upstream."""
        ...

    async def post(self, line_url: str, body: bytes, *,
                   give_up_at: float | None = None) -> UpstreamAnswer | UpstreamFailure | None:
        """None: not attempted (no time left for it); the line runs again later."""
        ...


class UpstreamSession(Protocol):
    """`async with factory(model) as upstream:` the upstream routed for a model, for one chunk run."""
    async def __aenter__(self) -> Upstream: ...
    async def __aexit__(self, *exc: object) -> None: ...


UpstreamFactory = Callable[[str | None], UpstreamSession]


class CapLease(Protocol):
    """Slot blocks of an upstream's global cap, leased by one chunk run (a crashed run's lease runs out)."""
    slots: int             # requests the run may keep in flight; 0: no block was free
    retry_seconds: float   # with 0 slots: how long the chunk waits on the queue before it tries again

    def renew_due(self) -> bool: ...
    def renew(self) -> bool:
        """Extend every block's lease; False when one was lost (it ran out and another run took it)."""
        ...
    def release(self) -> None: ...


class UpstreamCapPort(Protocol):
    """The global cap of each upstream across every worker (contract.UpstreamSettings.global_concurrency)."""
    async def lease(self, upstream: str, want: int, *, max_wait_seconds: float) -> CapLease | None:
        """Blocks worth up to `want` slots: at least one block if one comes free while the run waits (the
        upstream's `global_wait_seconds`, at most `max_wait_seconds`); `slots` 0 if none did. None: the
        upstream has no global cap."""
        ...


@dataclass
class WorkerPorts:
    batches: BatchRepository
    chunks: ChunkRepository
    segments: SegmentRepository
    files: EngineFiles
    workflow: WorkflowPort
    queue: ChunkQueuePort
    upstream: UpstreamFactory   # model -> async context manager yielding an Upstream
    cap: UpstreamCapPort | None = None   # the upstreams' global caps (None: per-worker limits only)


@dataclass
class FinalizePorts:
    batches: BatchRepository
    chunks: ChunkRepository
    segments: SegmentRepository
    files: EngineFiles
