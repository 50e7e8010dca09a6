"""The batch engine's adapters, built from Settings once per cold start (shared by the wf_* and
chunk_worker handlers)."""
from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from batchgate.adapters.batch_store import BatchStore
from batchgate.adapters.chunk_queue import ChunkQueue
from batchgate.adapters.chunk_store import ChunkStore
from batchgate.adapters.events import EventPublisher
from batchgate.adapters.file_store import FileStore
from batchgate.adapters.segments import SegmentStore
from batchgate.adapters.upstream import UpstreamClient, api_key
from batchgate.adapters.workflow import Workflow
from batchgate.domain.finalize import FinalizeLimits, FinalizePorts
from batchgate.domain.worker import WorkerLimits, WorkerPorts
from batchgate.settings import get_settings

T = TypeVar("T")
# This thread's event loop. Lambda runs one invocation at a time on one thread; local mode runs
# workers on a thread pool, so each thread gets its own loop.
_thread = threading.local()


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


class _ThreadLoop:
    """Closes the loop when its thread ends (local mode's and the tests' threads come and go)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_running():
            self.loop.close()


def run_on_worker_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this thread's long-lived event loop instead of asyncio.run's loop per call, so
    the upstream connection pools (bound to a loop, adapters/upstream.py) and the loop's thread pool
    outlive one invocation."""
    holder = getattr(_thread, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _thread.holder = _ThreadLoop()
    return holder.loop.run_until_complete(coro)


def upstream_for(model: str | None) -> UpstreamClient:
    """The upstream routed for `model` (settings.UpstreamConfig), with its key read once."""
    _, conf = get_settings().upstreams.for_model(model)
    return UpstreamClient(conf, api_key(conf))


def worker_ports() -> WorkerPorts:
    s = get_settings()
    return WorkerPorts(batches=batches(), chunks=chunks(), segments=SegmentStore(s.bucket), files=files(),
                       workflow=workflow(), queue=queue(), upstream=upstream_for)


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
