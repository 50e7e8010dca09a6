"""Worker crashes: the engine's step functions wrapped so a seeded plan raises `SimulatedCrash` at a
chosen call of a chosen step (like a Lambda that dies: no clean-up runs, the lease stays, the SQS
message is not acked)."""
from __future__ import annotations

import sys
import threading
from collections import Counter

from batchgate.adapters import chunk_store, segments
from batchgate.domain import worker
from batchgate.handlers import chunk_worker

# Worker steps a crash can hit, in the order a chunk run reaches them.
CRASH_STEPS = ("after_claim", "before_upstream", "after_upstream", "after_data", "after_record",
               "after_commit", "before_signal", "before_ack")


class SimulatedCrash(BaseException):
    """A worker dying mid-step (timeout, OOM, lost host): nothing after it runs, not even `finally`
    clean-up that would release the lease (the harness drops that release)."""


class CrashInjector:
    """Counts each worker step per batch and raises SimulatedCrash at the armed call numbers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, set[tuple[str, int]]] = {}
        self._calls: Counter = Counter()
        self.crashed: Counter = Counter()   # batch id -> crashes raised
        self.log: list[tuple[str, str, int]] = []

    def arm(self, batch_id: str, points: set[tuple[str, int]]) -> None:
        with self._lock:
            self._plans[batch_id] = set(points)

    def disarm(self, batch_id: str) -> None:
        with self._lock:
            self._plans.pop(batch_id, None)

    def step(self, batch_id: str, name: str) -> None:
        with self._lock:
            self._calls[(batch_id, name)] += 1
            n = self._calls[(batch_id, name)]
            if (name, n) not in self._plans.get(batch_id, ()):
                return
            self.crashed[batch_id] += 1
            self.log.append((batch_id, name, n))
        raise SimulatedCrash(f"{name}#{n} of {batch_id}")


def _crashing() -> bool:
    return isinstance(sys.exc_info()[1], SimulatedCrash)


def install_crash_hooks(mp, crashes: CrashInjector) -> None:
    """Wrap the engine's step functions (pytest MonkeyPatch `mp` undoes it)."""
    CS, SS, Run = chunk_store.ChunkStore, segments.SegmentStore, worker._ChunkRun
    claim, release, commit = CS.claim, CS.release, CS.commit_segment
    put_data, put_record = SS.put_data, SS.put_record
    run_lines, one = Run._run_lines, Run._one
    signal, record_handler = worker.signal_if_complete, chunk_worker.record_handler

    def claim_(self, batch_id, n, *a, **kw):
        got = claim(self, batch_id, n, *a, **kw)
        if got is not None:
            crashes.step(batch_id, "after_claim")
        return got

    def release_(self, batch_id, n, owner):
        if _crashing():
            return  # a dead worker releases nothing: the lease runs out
        return release(self, batch_id, n, owner)

    def commit_(self, tenant, batch_id, *a, **kw):
        ok = commit(self, tenant, batch_id, *a, **kw)
        if ok:
            crashes.step(batch_id, "after_commit")
        return ok

    def put_data_(self, batch_id, *a, **kw):
        put_data(self, batch_id, *a, **kw)
        crashes.step(batch_id, "after_data")

    def put_record_(self, batch_id, *a, **kw):
        ok = put_record(self, batch_id, *a, **kw)
        crashes.step(batch_id, "after_record")
        return ok

    async def run_lines_(self):
        crashes.step(self.msg.batch_id, "before_upstream")
        return await run_lines(self)

    async def one_(self, client, line):
        await one(self, client, line)
        crashes.step(self.msg.batch_id, "after_upstream")

    def signal_(tenant, batch_id, ports):
        crashes.step(batch_id, "before_signal")
        return signal(tenant, batch_id, ports)

    def record_handler_(record, lambda_context):
        out = record_handler(record, lambda_context)
        crashes.step(record.body.batch_id, "before_ack")
        return out

    mp.setattr(CS, "claim", claim_)
    mp.setattr(CS, "release", release_)
    mp.setattr(CS, "commit_segment", commit_)
    mp.setattr(SS, "put_data", put_data_)
    mp.setattr(SS, "put_record", put_record_)
    mp.setattr(Run, "_run_lines", run_lines_)
    mp.setattr(Run, "_one", one_)
    mp.setattr(worker, "signal_if_complete", signal_)
    mp.setattr(chunk_worker, "record_handler", record_handler_)
