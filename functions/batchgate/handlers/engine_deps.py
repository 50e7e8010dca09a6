"""The batch engine's adapters, built from Settings once per cold start (shared by the wf_* and
chunk_worker handlers)."""
from __future__ import annotations

import functools

from batchgate.adapters.batch_store import BatchStore
from batchgate.adapters.chunk_queue import ChunkQueue
from batchgate.adapters.chunk_store import ChunkStore
from batchgate.adapters.events import EventPublisher
from batchgate.adapters.file_store import FileStore
from batchgate.adapters.segments import SegmentStore
from batchgate.adapters.upstream import UpstreamClient, api_key
from batchgate.adapters.upstream_cap import UpstreamCap
from batchgate.adapters.workflow import Workflow
from batchgate.domain.finalize import FinalizeLimits
from batchgate.domain.ports import FinalizePorts, WorkerPorts
from batchgate.domain.worker import WorkerLimits
from batchgate.settings import get_settings


def batches() -> BatchStore:
    s = get_settings()
    return BatchStore(s.table, EventPublisher(s.event_bus))


def files() -> FileStore:
    s = get_settings()
    return FileStore(s.table, s.bucket)


def chunks() -> ChunkStore:
    return ChunkStore(get_settings().table)


def workflow() -> Workflow:
    return Workflow(get_settings().state_machine_arn)


def queue() -> ChunkQueue:
    return ChunkQueue(get_settings().chunk_queue_url)


def upstream_for(model: str | None) -> UpstreamClient:
    """The upstream routed for `model` (contract.UpstreamConfig), with its key read once."""
    name, conf = get_settings().upstreams.for_model(model)
    return UpstreamClient(conf, api_key(conf), name=name)


def worker_ports() -> WorkerPorts:
    s = get_settings()
    return WorkerPorts(batches=batches(), chunks=chunks(), segments=SegmentStore(s.bucket), files=files(),
                       workflow=workflow(), queue=queue(), upstream=upstream_for,
                       cap=UpstreamCap(s.table, s.upstreams))


@functools.cache
def worker_limits() -> WorkerLimits:
    s = get_settings()
    return WorkerLimits(status_poll_seconds=s.worker_status_poll_seconds,
                        stop_reserve_seconds=s.worker_stop_reserve_seconds,
                        flush_seconds=s.worker_flush_seconds)


def finalize_ports() -> FinalizePorts:
    s = get_settings()
    return FinalizePorts(batches=batches(), chunks=chunks(), segments=SegmentStore(s.bucket), files=files())


def finalize_limits() -> FinalizeLimits:
    return FinalizeLimits(lease_wait_seconds=get_settings().finalize_lease_wait_seconds)
