"""One chunk worker run: claim the chunk, adopt segments a crashed run left uncommitted, send the
remaining lines upstream with bounded concurrency, and commit the answered prefix as a segment.

The pieces: `chunk_lines` (what is sent), `lanes` (how many at once), `chunk_commit` (the protocol
that makes each line count exactly once). This module decides when a run starts, stops and hands its
chunk back. Lines never answered are abandoned on cancel/expiry and Finalize writes them as
batch_cancelled / batch_expired.
"""
from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from batchgate.contract import Metric
from batchgate.domain.chunk_commit import SegmentCommitter
from batchgate.domain.chunk_lines import PendingLine, input_key, parse_lines
from batchgate.domain.lanes import run_lanes
from batchgate.domain.ports import CapLease, Upstream, UpstreamAnswer, WorkerPorts
from batchgate.domain.results import error_line, response_line, usage_of
from batchgate.models.engine import AnsweredLine, ChunkCompletionOutput, ChunkMessage, ChunkRecord, Usage
from batchgate.models.records import BatchRecord
from batchgate.observability import chunk_run_metrics, logger

Outcome = Literal["missing", "closed", "inactive", "busy", "done", "handed_back", "stopped", "lost"]


@dataclass(frozen=True)
class WorkerLimits:
    status_poll_seconds: float = 2.0
    stop_reserve_seconds: float = 90.0     # stop starting lines when less Lambda time is left
    cancel_reserve_seconds: float = 30.0   # abandon in-flight lines when less is left
    flush_seconds: float = 60.0            # commit the answered prefix this often while running
    lease_margin_seconds: float = 30.0     # the lease outlives the invocation by this much
    expiry_lease_seconds: float = 15.0     # ...but never expires_at by more than this (issue 8, defect 8)
    # Answers a run holds between commits, bounded whatever the chunk's size: from `flush_bytes` held, the
    # next tick commits the answered prefix; at `held_bytes_max` a lane starts no new line until a commit
    # makes room (answers held behind a slow line wait for it). With the answers in flight (concurrency x
    # UpstreamSettings.max_answer_bytes) and a commit's joined copy, this is what the worker's memory holds.
    flush_bytes: int = 8 * 1024 * 1024
    held_bytes_max: int = 32 * 1024 * 1024


@dataclass(slots=True)
class LineTally:
    """A chunk run's lines, summed as they are answered and emitted once when the run ends."""
    sent: int = 0
    answered: int = 0
    failed: int = 0
    deferred: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def emit_run_metrics(lines: LineTally, upstream: Upstream, model: str | None) -> None:
    """One metrics document for the run (contract.Metric; dimensions service, upstream, model)."""
    ups = upstream.tally
    try:
        chunk_run_metrics(upstream=upstream.name, model=model, latencies_ms=ups.latencies_ms, counts={
            Metric.LINES_SENT: lines.sent, Metric.LINES_ANSWERED: lines.answered, Metric.LINES_FAILED: lines.failed,
            Metric.LINES_DEFERRED: lines.deferred, Metric.REQUESTS_RETRIED: ups.retries,
            Metric.UPSTREAM_THROTTLED: ups.throttled, Metric.INPUT_TOKENS: lines.input_tokens,
            Metric.OUTPUT_TOKENS: lines.output_tokens})
    except Exception:  # metrics never decide a chunk run's outcome
        logger.exception("chunk run metrics not emitted")


def signal_if_complete(tenant: str, batch_id: str, ports: WorkerPorts) -> bool:
    """After the last chunk is done, resume the waiting workflow (idempotent: a used token is ignored)."""
    batch = ports.batches.get(tenant, batch_id, consistent=True)
    if not batch or batch.status != "in_progress" or not batch.task_token:
        return False
    count = batch.chunk_count or 0
    if not count or batch.chunks_done < count:
        return False
    out = ChunkCompletionOutput(batch_id=batch_id, tenant=tenant).model_dump()
    return bool(ports.workflow.succeed_task(batch.task_token, out))


def continue_lane(msg: ChunkMessage, batch: BatchRecord | None, ports: WorkerPorts) -> None:
    """A finished chunk sends the next chunk of its lane (`batch.chunk_lanes`, domain/dispatch.py), unless
    that one is no longer open (a redelivery after the send already happened, or the batch ended). A
    crash before the send leaves this chunk's own message unacked: its redelivery finds the chunk done
    and sends it. The stride is the batch's, not the message's, so any copy of a pointer carries on."""
    if batch is None or not batch.chunk_lanes or batch.chunk_count is None:
        return
    if msg.chunk + batch.chunk_lanes >= batch.chunk_count:
        return
    nxt = ports.chunks.get(msg.batch_id, msg.chunk + batch.chunk_lanes)
    if nxt is not None and nxt.state == "open":
        ports.queue.send(msg.model_copy(update={"chunk": nxt.n}))


def batch_stop_reason(batch: BatchRecord | None, now: float) -> str | None:
    if batch is None or batch.status in ("cancelling", "cancelled"):
        return "cancelled"
    if batch.status != "in_progress":
        return "expired" if batch.status == "expired" else "cancelled"
    if now >= batch.expires_at:
        return "expired"
    return None


async def process_chunk(msg: ChunkMessage, ports: WorkerPorts, limits: WorkerLimits,
                        remaining_seconds: Callable[[], float]) -> Outcome:
    chunk = ports.chunks.get(msg.batch_id, msg.chunk)
    if chunk is None:
        logger.warning("chunk not found", extra={"batch_id": msg.batch_id, "chunk": msg.chunk})
        return "missing"
    if chunk.state != "open":
        if chunk.state == "done":  # a duplicate, or a redelivery after the lane's send or the signal was lost
            continue_lane(msg, ports.batches.get(msg.tenant, msg.batch_id, consistent=True), ports)
            signal_if_complete(msg.tenant, msg.batch_id, ports)
        return "closed"
    batch = ports.batches.get(msg.tenant, msg.batch_id)
    if batch is None or batch_stop_reason(batch, time.time()):
        return "inactive"  # finalize seals the chunk and writes its never-run lines
    owner = uuid.uuid4().hex
    # A live worker stops within a poll of expires_at (`batch_stop_reason`); a crashed one must not
    # keep Finalize from sealing its chunk for the rest of its invocation, or the batch would reach
    # `expired` up to ~15 minutes late. A commit after the seal fails (the chunk is no longer open).
    lease_until = min(time.time() + remaining_seconds() + limits.lease_margin_seconds,
                      batch.expires_at + limits.expiry_lease_seconds)
    claimed = ports.chunks.claim(msg.batch_id, msg.chunk, owner, lease_until, time.time())
    if claimed is None:
        # A live lease. This message may be the holder's own, redelivered because the holder died
        # (its lease outlives it), so acking it alone could leave the chunk with no message at all.
        # The same pointer goes back on the queue to arrive when the lease has run out: by then the
        # holder has finished (the copy finds the chunk closed) or is dead (the copy takes it over).
        held = ports.chunks.get(msg.batch_id, msg.chunk)
        until = held.lease_until if held is not None and held.lease_until is not None else time.time()
        ports.queue.send(msg, delay_seconds=until - time.time() + 1)
        return "busy"
    run = _ChunkRun(msg, claimed, batch, owner, ports, limits, remaining_seconds)
    try:
        return await run.run()
    except BaseException:
        ports.chunks.release(msg.batch_id, msg.chunk, owner)
        raise


class _ChunkRun:
    def __init__(self, msg: ChunkMessage, chunk: ChunkRecord, batch: BatchRecord, owner: str,
                 ports: WorkerPorts, limits: WorkerLimits, remaining: Callable[[], float]):
        self.msg, self.batch, self.ports, self.limits, self.remaining = msg, batch, ports, limits, remaining
        self.commits = SegmentCommitter(msg, chunk, owner, ports)
        rem0 = remaining()
        # Never let the reserves eat the whole invocation (a short timeout would hand back forever).
        self.stop_reserve = min(limits.stop_reserve_seconds, rem0 * 0.25)
        self.cancel_reserve = min(limits.cancel_reserve_seconds, rem0 * 0.1)
        self.give_up_at = time.monotonic() + rem0 - self.stop_reserve
        self.cap: CapLease | None = None   # this run's blocks of the upstream's global cap, if it has one
        self.cap_retry = 0.0               # with no block: when to try again (the hand-back delay)
        self.room = asyncio.Event()        # set while the answers held are under limits.held_bytes_max
        self.room.set()

    async def run(self) -> Outcome:
        commits = self.commits
        if not commits.adopt_orphans():
            return "lost"
        commits.load_ahead()
        stop: str | None = None
        if commits.chunk.next_line < commits.chunk.end_line:
            stop = await self._run_lines()
        if stop != "lost":
            commits.save_ahead()
            flushed = commits.flush(release=True)
            if flushed is False:
                stop = "lost"
            elif flushed is None and commits.chunk.state == "open":
                self.ports.chunks.release(self.msg.batch_id, commits.chunk.n, commits.owner)
        if stop == "lost":
            return "lost"
        if commits.chunk.state == "done":
            continue_lane(self.msg, self.batch, self.ports)
            signal_if_complete(self.msg.tenant, self.msg.batch_id, self.ports)
            return "done"
        if stop in ("cancelled", "expired"):
            return "stopped"
        if stop == "capped":  # no block of the upstream's global cap came free: the pointer again, later
            self.ports.queue.send(self.msg, delay_seconds=self.cap_retry)
            return "busy"
        self.ports.queue.send(self.msg)  # out of time (or lines deferred): the same pointer again
        return "handed_back"

    async def _run_lines(self) -> str | None:
        chunk = self.commits.chunk
        data = self.ports.files.read_range(input_key(self.batch, self.ports.files),
                                           chunk.next_byte, chunk.byte_end)
        lines = parse_lines(data, offset=chunk.next_byte, first_index=chunk.next_line)   # as they are taken
        self.tally = LineTally()
        async with self.ports.upstream(self.batch.model) as client:
            # The upstream's global cap (adapters/upstream_cap.py): this run's share of it, if it has one.
            self.cap = cap = None if self.ports.cap is None else await self.ports.cap.lease(
                client.name, client.concurrency, max_wait_seconds=self.remaining() - self.stop_reserve)
            if cap is not None and not cap.slots:
                self.cap_retry = cap.retry_seconds
                return "capped"
            try:
                return await self._drive(client, lines)
            finally:
                if cap is not None:
                    cap.release()
                emit_run_metrics(self.tally, client, self.batch.model)

    async def _one(self, client: Upstream, line: PendingLine) -> None:
        tally = self.tally
        tally.sent += 1
        answer = await client.post(line.url, line.body, give_up_at=self.give_up_at)
        if answer is None:
            tally.deferred += 1
            return  # deferred: it runs again after the hand-back
        if isinstance(answer, UpstreamAnswer):
            ok = 200 <= answer.status_code < 300
            data = response_line(line.custom_id, answer.status_code, answer.request_id, answer.body,
                                 raw_json=answer.raw_json)
            usage = usage_of(answer.body) if ok else Usage()
        else:
            ok, usage = False, Usage()
            data = error_line(line.custom_id, answer.code, answer.message)
        if ok:
            tally.answered += 1
            tally.input_tokens += usage.input_tokens
            tally.output_tokens += usage.output_tokens
        else:
            tally.failed += 1
        self.commits.hold(line.index, AnsweredLine(ok, data, usage, line.end))
        if self.commits.held_bytes >= self.limits.held_bytes_max:
            self.room.clear()
        await self.room.wait()   # this lane's next line waits for a commit (tick) to make room

    async def _drive(self, client: Upstream, lines: Iterator[PendingLine]) -> str | None:
        """Send the lines on `client.concurrency` lanes (at most the slots `self.cap` holds, renewed as it goes);
        between waits, stop starting lines when time runs short, abandon them when it runs out or the
        batch is cancelled or expired (cancel really stops upstream spend), and commit the answered
        prefix every `flush_seconds`."""
        limits, prefilled, cap = self.limits, self.commits.prefilled, self.cap
        stop: str | None = None
        next_poll = time.monotonic() + limits.status_poll_seconds
        next_flush = time.monotonic() + limits.flush_seconds

        def take() -> PendingLine | None:
            nonlocal stop
            if stop is not None:
                return None
            if self.remaining() <= self.stop_reserve:
                stop = "time"
                return None
            line = next(lines, None)
            while line is not None and line.index in prefilled:
                line = next(lines, None)
            return line

        def wait() -> float:
            # Wake for the next poll or flush, and no later than the point where the lines in flight
            # must be abandoned (a short timeout's cancel reserve is under a second).
            now = time.monotonic()
            return max(0.0, min(1.0, next_poll - now, next_flush - now, self.remaining() - self.cancel_reserve))

        async def tick() -> float | None:
            nonlocal stop, next_poll, next_flush
            now = time.monotonic()
            left = self.remaining()
            if stop is None and left <= self.stop_reserve:
                stop = "time"
            end = left <= self.cancel_reserve
            if now >= next_poll or time.time() >= self.batch.expires_at:
                next_poll = now + limits.status_poll_seconds
                batch = await asyncio.to_thread(self.ports.batches.get, self.msg.tenant, self.msg.batch_id)
                reason = batch_stop_reason(batch, time.time())
                if reason:
                    stop, end = reason, True
            if cap is not None and cap.renew_due() and not await asyncio.to_thread(cap.renew):
                stop = stop or "time"  # a block of the global cap was lost: start no more lines
            if stop is None and (now >= next_flush or self.commits.held_bytes >= limits.flush_bytes):
                next_flush = now + limits.flush_seconds
                if await self.commits.flush_while_running() is False:
                    stop, end = "lost", True
            if stop is not None or self.commits.held_bytes < limits.held_bytes_max:
                self.room.set()   # lanes waiting for room go on (to find `take` empty, when stopping)
            return None if end else wait()

        width = client.concurrency if cap is None else min(client.concurrency, cap.slots)
        await run_lanes(width, take, functools.partial(self._one, client), tick, wait())
        return stop
