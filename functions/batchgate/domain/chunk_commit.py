"""The commit protocol of one chunk run: what makes every line count exactly once.

Only the lease holder writes a chunk's segments; a segment is committed (cursor moved and counts
ADDed to the batch, one transaction) only from the cursor the holder read; and a segment's `.seg.json`
is create-only and written last, so a run that crashed between S3 and DynamoDB leaves a record the
next run adopts instead of re-running its lines. Answers past the first unanswered line cannot be in a
segment yet: they are kept in the chunk's `ahead.jsonl` when the lease goes, and used (not sent again)
by the next run or by Finalize.
"""
from __future__ import annotations

import asyncio

from batchgate.domain.ports import WorkerPorts
from batchgate.models.engine import AnsweredLine, ChunkMessage, ChunkRecord, SegmentRecord, Usage
from batchgate.observability import logger


class SegmentCommitter:
    """The lease holder's view of its chunk: the committed cursor, and the answers not yet committed
    (`results`, touched on the event loop's thread only)."""

    def __init__(self, msg: ChunkMessage, chunk: ChunkRecord, owner: str, ports: WorkerPorts):
        self.msg, self.chunk, self.owner, self.ports = msg, chunk, owner, ports
        self.results: dict[int, AnsweredLine] = {}
        self.held_bytes = 0                           # of the result lines in `results`
        self.prefilled: frozenset[int] = frozenset()  # answered by an earlier run (ahead.jsonl)

    def hold(self, index: int, answered: AnsweredLine) -> None:
        """Keep a line's answer until a segment commits it (on the event loop thread only)."""
        self.results[index] = answered
        self.held_bytes += len(answered.data)

    def commit(self, seg: SegmentRecord, release: bool) -> bool:
        ok = self.ports.chunks.commit_segment(self.msg.tenant, self.msg.batch_id, self.chunk, self.owner,
                                              seg, release=release)
        if ok:
            done = seg.end_line >= self.chunk.end_line
            self.chunk = self.chunk.model_copy(update={
                "next_line": seg.end_line, "next_byte": seg.end_byte, "segments": self.chunk.segments + 1,
                "state": "done" if done else "open"})
        return ok

    @property
    def first_run(self) -> bool:
        """No run held this chunk before this one: nothing to adopt and no kept answers (only a lease
        holder writes a chunk's objects), so the S3 reads that look for them are skipped."""
        return self.chunk.claims == 1

    def adopt_orphans(self) -> bool:
        """Commit segments whose objects a crashed run wrote but never recorded."""
        if self.first_run:
            return True
        while self.chunk.next_line < self.chunk.end_line:
            seg = self.ports.segments.get_record(self.msg.batch_id, self.chunk.n, self.chunk.next_line)
            if seg is None:
                return True
            logger.info("adopting uncommitted segment", extra={"batch_id": self.msg.batch_id,
                                                               "chunk": self.chunk.n, "start": seg.start_line})
            if not self.commit(seg, release=False):
                return False
        return True

    def _take_prefix(self) -> tuple[int, list[AnsweredLine]] | None:
        """Remove the answered prefix [next_line, k) from `results` (on the event loop thread only)."""
        start = k = self.chunk.next_line
        while k in self.results:
            k += 1
        if k == start:
            return None
        taken = [self.results.pop(i) for i in range(start, k)]
        self.held_bytes -= sum(len(r.data) for r in taken)
        return start, taken

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
                            usage=usage, writer=self.owner)
        seg_store = self.ports.segments
        seg_store.put_data(self.msg.batch_id, self.chunk.n, start, out, err, writer=self.owner)
        if not seg_store.put_record(self.msg.batch_id, self.chunk.n, seg):
            # Someone recorded this start line first: theirs is the truth, ours is dropped.
            theirs = seg_store.get_record(self.msg.batch_id, self.chunk.n, start)
            if theirs is None:
                raise RuntimeError(f"segment {start} of chunk {self.chunk.n} refused but not found")
            seg = theirs
        return self.commit(seg, release=release)

    def flush(self, release: bool) -> bool | None:
        """Commit the answered prefix [next_line, k). None when there is nothing to commit."""
        taken = self._take_prefix()
        return None if taken is None else self._write_segment(*taken, release)

    async def flush_while_running(self) -> bool | None:
        """`flush` with its S3/DynamoDB calls on a thread, so in-flight lines keep going. The caller
        awaits it: one flush at a time, and `results` is only touched on the loop thread."""
        taken = self._take_prefix()
        return None if taken is None else await asyncio.to_thread(self._write_segment, *taken, False)

    def load_ahead(self) -> None:
        """Answers an earlier run got past its gap: used, not sent again."""
        if self.first_run:
            return
        ahead = self.ports.segments.get_ahead(self.msg.batch_id, self.chunk.n)
        for i, a in ahead.items():
            if self.chunk.next_line <= i < self.chunk.end_line:
                self.hold(i, a)
        self.prefilled = frozenset(self.results)

    def save_ahead(self) -> None:
        """Keep the answers past the first unanswered line, which no segment can hold yet, before the
        lease goes: the next run (or Finalize) uses them. Paid for once, reported once."""
        k = self.chunk.next_line
        while k in self.results:
            k += 1
        ahead = {i: a for i, a in self.results.items() if i > k}
        if ahead:
            self.ports.segments.put_ahead(self.msg.batch_id, self.chunk.n, ahead)
