"""One chunk worker run: claim the chunk, adopt segments a crashed run left uncommitted, send the
remaining lines upstream with bounded concurrency, and commit the answered prefix as a segment.

Exactly-once rests on three things: only the lease holder writes a chunk's segments; a segment is
committed (cursor moved + counts ADDed, one transaction) only from the cursor the holder read; and a
segment's `.seg.json` is create-only, so a run that crashed between S3 and DynamoDB leaves a record
the next run commits instead of re-running its lines. Answered lines after a gap are dropped (they
run again later); lines never answered are abandoned on cancel/expiry and finalize writes them as
batch_cancelled / batch_expired.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any, Literal

import orjson

from batchgate.domain.jsonl import iter_lines, raw_member
from batchgate.domain.ports import EngineFiles, Upstream, UpstreamAnswer, WorkerPorts
from batchgate.domain.results import error_line, response_line, usage_of
from batchgate.models.engine import (AnsweredLine, ChunkCompletionOutput, ChunkMessage, ChunkRecord,
                                     SegmentRecord, Usage)
from batchgate.models.records import BatchRecord
from batchgate.observability import logger

Outcome = Literal["missing", "closed", "inactive", "busy", "done", "handed_back", "stopped", "lost"]


@dataclass(frozen=True)
class WorkerLimits:
    status_poll_seconds: float = 2.0
    stop_reserve_seconds: float = 90.0     # stop starting lines when less Lambda time is left
    cancel_reserve_seconds: float = 30.0   # abandon in-flight lines when less is left
    flush_seconds: float = 60.0            # commit the answered prefix this often while running
    lease_margin_seconds: float = 30.0     # the lease outlives the invocation by this much
    expiry_lease_seconds: float = 15.0     # ...but never expires_at by more than this (issue 8, defect 8)


@dataclass(slots=True)
class _Line:
    index: int
    custom_id: str | None
    url: str
    body: bytes
    end: int



def input_record(batch: BatchRecord, files: EngineFiles) -> dict[str, Any]:
    """The input file's bytes, even if its record has since expired (validation kept the key)."""
    return {"s3_key": batch.input_s3_key or files.file_key(batch.tenant, batch.input_file_id)}


def parse_lines(data: bytes, *, offset: int, first_index: int) -> list[_Line]:
    out = []
    for line in iter_lines([data], offset=offset, first_index=first_index):
        obj = orjson.loads(line.data)
        # The body goes upstream as the bytes the user wrote: whatever validation accepts is sendable.
        out.append(_Line(line.index, obj.get("custom_id"), obj["url"], raw_member(line.data, "body"), line.end))
    return out


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
        if chunk.state == "done":  # a duplicate, or a redelivery after the success signal was lost
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
        self.msg, self.chunk, self.batch, self.owner = msg, chunk, batch, owner
        self.ports, self.limits, self.remaining = ports, limits, remaining
        self.results: dict[int, AnsweredLine] = {}
        self.prefilled: frozenset[int] = frozenset()  # answered by an earlier run (ahead.jsonl)
        rem0 = remaining()
        # Never let the reserves eat the whole invocation (a short timeout would hand back forever).
        self.stop_reserve = min(limits.stop_reserve_seconds, rem0 * 0.25)
        self.cancel_reserve = min(limits.cancel_reserve_seconds, rem0 * 0.1)
        self.give_up_at = time.monotonic() + rem0 - self.stop_reserve

    # -- commits -----------------------------------------------------------------------------
    def _commit(self, seg: SegmentRecord, release: bool) -> bool:
        ok = self.ports.chunks.commit_segment(self.msg.tenant, self.msg.batch_id, self.chunk, self.owner,
                                              seg, release=release)
        if ok:
            done = seg.end_line >= self.chunk.end_line
            self.chunk = self.chunk.model_copy(update={
                "next_line": seg.end_line, "next_byte": seg.end_byte, "segments": self.chunk.segments + 1,
                "state": "done" if done else "open"})
        return ok

    def _adopt_orphans(self) -> bool:
        """Commit segments whose objects a crashed run wrote but never recorded."""
        while self.chunk.next_line < self.chunk.end_line:
            seg = self.ports.segments.get_record(self.msg.batch_id, self.chunk.n, self.chunk.next_line)
            if seg is None:
                return True
            logger.info("adopting uncommitted segment", extra={"batch_id": self.msg.batch_id,
                                                               "chunk": self.chunk.n, "start": seg.start_line})
            if not self._commit(seg, release=False):
                return False
        return True

    def _take_prefix(self) -> tuple[int, list[AnsweredLine]] | None:
        """Remove the answered prefix [next_line, k) from `results` (on the event loop thread only)."""
        start = k = self.chunk.next_line
        while k in self.results:
            k += 1
        if k == start:
            return None
        return start, [self.results.pop(i) for i in range(start, k)]

    def _write_segment(self, start: int, answered: list[AnsweredLine], release: bool) -> bool:
        out = b"".join(r.data for r in answered if r.ok)
        err = b"".join(r.data for r in answered if not r.ok)
        usage = Usage()
        for r in answered:
            usage = usage + r.usage
        k = start + len(answered)
        seg = SegmentRecord(start_line=start, end_line=k, start_byte=self.chunk.next_byte,
                            end_byte=answered[-1].end, completed=sum(r.ok for r in answered),
                            failed=sum(not r.ok for r in answered), out_bytes=len(out), err_bytes=len(err),
                            usage=usage)
        seg_store = self.ports.segments
        seg_store.put_data(self.msg.batch_id, self.chunk.n, start, out, err)
        if not seg_store.put_record(self.msg.batch_id, self.chunk.n, seg):
            # Someone recorded this start line first: theirs is the truth, ours is dropped.
            seg = seg_store.get_record(self.msg.batch_id, self.chunk.n, start)
        return self._commit(seg, release=release)

    def _flush(self, release: bool) -> bool | None:
        """Commit the answered prefix [next_line, k). None when there is nothing to commit."""
        taken = self._take_prefix()
        return None if taken is None else self._write_segment(*taken, release)

    async def _flush_while_running(self) -> bool | None:
        """`_flush` with its S3/DynamoDB calls on a thread, so in-flight lines keep going. The caller
        awaits it: one flush at a time, and `results` is only touched on the loop thread."""
        taken = self._take_prefix()
        return None if taken is None else await asyncio.to_thread(self._write_segment, *taken, False)

    def _load_ahead(self) -> None:
        """Answers an earlier run got past its gap: used, not sent again."""
        ahead = self.ports.segments.get_ahead(self.msg.batch_id, self.chunk.n)
        self.results.update({i: a for i, a in ahead.items() if self.chunk.next_line <= i < self.chunk.end_line})
        self.prefilled = frozenset(self.results)

    def _save_ahead(self) -> None:
        """Keep the answers past the first unanswered line, which no segment can hold yet, before the
        lease goes: the next run (or Finalize) uses them. Paid for once, reported once."""
        k = self.chunk.next_line
        while k in self.results:
            k += 1
        ahead = {i: a for i, a in self.results.items() if i > k}
        if ahead:
            self.ports.segments.put_ahead(self.msg.batch_id, self.chunk.n, ahead)

    # -- the run -----------------------------------------------------------------------------
    async def run(self) -> Outcome:
        if not self._adopt_orphans():
            return "lost"
        self._load_ahead()
        stop: str | None = None
        if self.chunk.next_line < self.chunk.end_line:
            stop = await self._run_lines()
        if stop != "lost":
            self._save_ahead()
            flushed = self._flush(release=True)
            if flushed is False:
                stop = "lost"
            elif flushed is None and self.chunk.state == "open":
                self.ports.chunks.release(self.msg.batch_id, self.chunk.n, self.owner)
        if stop == "lost":
            return "lost"
        if self.chunk.state == "done":
            signal_if_complete(self.msg.tenant, self.msg.batch_id, self.ports)
            return "done"
        if stop in ("cancelled", "expired"):
            return "stopped"
        self.ports.queue.send(self.msg)  # out of time (or lines deferred): the same pointer again
        return "handed_back"

    async def _run_lines(self) -> str | None:
        data = self.ports.files.read_range(input_record(self.batch, self.ports.files),
                                           self.chunk.next_byte, self.chunk.byte_end)
        lines = parse_lines(data, offset=self.chunk.next_byte, first_index=self.chunk.next_line)
        del data
        async with self.ports.upstream(self.batch.model) as client:
            return await self._drive(client, iter(lines))

    async def _one(self, client: Upstream, line: _Line) -> None:
        answer = await client.post(line.url, line.body, give_up_at=self.give_up_at)
        if answer is None:
            return  # deferred: it runs again after the hand-back
        if isinstance(answer, UpstreamAnswer):
            ok = 200 <= answer.status_code < 300
            data = response_line(line.custom_id, answer.status_code, answer.request_id, answer.body,
                                 raw_json=answer.raw_json)
            usage = usage_of(answer.body) if ok else Usage()
        else:
            ok, usage = False, Usage()
            data = error_line(line.custom_id, answer.code, answer.message)
        self.results[line.index] = AnsweredLine(ok, data, usage, line.end)

    async def _drive(self, client: Upstream, lines) -> str | None:
        """`concurrency` lanes, each sending its next line as soon as the last is answered (a pool
        connection left idle costs httpcore CPU on every request); this loop polls the batch and
        flushes, with its AWS calls on a thread so the lanes never wait for them."""
        limits = self.limits
        stop: str | None = None

        async def lane() -> None:
            nonlocal stop
            while stop is None:
                if self.remaining() < self.stop_reserve:
                    stop = "time"
                    return
                line = next(lines, None)
                while line is not None and line.index in self.prefilled:
                    line = next(lines, None)
                if line is None:
                    return
                await self._one(client, line)

        lanes = {asyncio.create_task(lane()) for _ in range(client.concurrency)}
        next_poll = time.monotonic() + limits.status_poll_seconds
        next_flush = time.monotonic() + limits.flush_seconds
        try:
            while lanes:
                timeout = max(0.0, min(1.0, next_poll - time.monotonic(), next_flush - time.monotonic()))
                done, lanes = await asyncio.wait(lanes, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    t.result()
                now = time.monotonic()
                left = self.remaining()
                if stop is None and left < self.stop_reserve:
                    stop = "time"
                if left < self.cancel_reserve:
                    lanes = await _abandon(lanes)
                if now >= next_poll or time.time() >= self.batch.expires_at:
                    next_poll = now + limits.status_poll_seconds
                    batch = await asyncio.to_thread(self.ports.batches.get, self.msg.tenant, self.msg.batch_id)
                    reason = batch_stop_reason(batch, time.time())
                    if reason:
                        stop = reason
                        lanes = await _abandon(lanes)  # cancel really stops upstream spend
                if stop is None and now >= next_flush:
                    next_flush = now + limits.flush_seconds
                    if await self._flush_while_running() is False:
                        return "lost"
            return stop
        finally:
            await _abandon(lanes)  # never leave a lane running past this run (the loop may be reused)


async def _abandon(tasks: set[asyncio.Task]) -> set[asyncio.Task]:
    """Cancel in-flight lines: their answers are not recorded, and they run again or end not-run."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return set()
