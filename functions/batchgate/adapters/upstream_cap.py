"""The global cap of an upstream across every worker (`UpstreamSettings.global_concurrency`).

The cap's slots are split into blocks of `global_block_size` (default: the upstream's per-run
`concurrency`), one state-table item each (pk `UPSTREAM#<name>`, sk `BLOCK#<n:04d>`). A chunk run
leases blocks with a conditional UpdateItem (free, or its lease ran out), as it leases its chunk
(adapters/chunk_store.py), keeps as many requests in flight as its blocks hold, renews them on the
worker's ticks and releases them when it ends. A crashed run's blocks come back when their lease runs
out (LEASE_SECONDS). AWS calls: one UpdateItem per block leased, renewed (every LEASE_SECONDS / 3)
and released, plus the failed tries of a run that waits for a block; never one per request.

The items need no set-up: the first lease creates them (UpdateItem upserts). Blocks past the
configured count (after the cap was lowered) are simply never leased again.
"""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from batchgate import aws
from batchgate.adapters.batch_store import av, is_conditional_failure
from batchgate.contract import UpstreamConfig, UpstreamSettings

LEASE_SECONDS = 60          # a crashed run's blocks are free again after at most this
RENEW_SECONDS = LEASE_SECONDS / 3
MAX_BLOCKS = 64             # bigger blocks rather than more: a waiting run tries each block per poll
POLL_SECONDS = (0.25, 0.75)  # between a waiting run's tries (jittered, so waiters do not move in step)
RETRY_SECONDS = (2.0, 5.0)  # the hand-back delay of a run that got no block (live holders renew, so
                            # when their leases run out says little about when a block frees)


def _now() -> float:
    """Wall-clock seconds (leases are compared across workers); the tests move it."""
    return time.time()


def cap_pk(upstream: str) -> str:
    return f"UPSTREAM#{upstream}"


def block_sk(n: int) -> str:
    return f"BLOCK#{n:04d}"


def block_sizes(settings: UpstreamSettings) -> list[int]:
    """The slots of each block of the upstream's global cap ([] when it has none)."""
    cap = settings.global_concurrency
    if not cap:
        return []
    size = max(1, min(cap, settings.global_block_size or settings.concurrency))
    size = max(size, -(-cap // MAX_BLOCKS))
    full, rest = divmod(cap, size)
    return [size] * full + ([rest] if rest else [])


class BlockLease:
    """Blocks of one upstream's cap held by one chunk run (domain/ports.CapLease)."""

    def __init__(self, table: str, upstream: str, owner: str, held: list[tuple[int, int]],
                 retry_seconds: float):
        self.table, self.pk, self.owner = table, cap_pk(upstream), owner
        self.held = held                  # (block number, slots)
        self.slots = sum(s for _, s in held)
        self.retry_seconds = retry_seconds
        self.renewed_at = _now()

    def _update(self, n: int, expression: str, values: dict[str, Any]) -> bool:
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table, Key=av({"pk": self.pk, "sk": block_sk(n)}), UpdateExpression=expression,
                ConditionExpression="lease_owner = :me", ExpressionAttributeValues=av({":me": self.owner, **values}))
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            return False
        return True

    def renew_due(self) -> bool:
        return bool(self.held) and _now() >= self.renewed_at + RENEW_SECONDS

    def renew(self) -> bool:
        now = _now()
        kept = [(n, s) for n, s in self.held
                if self._update(n, "SET lease_until = :u", {":u": int(now + LEASE_SECONDS) + 1})]
        lost = len(kept) < len(self.held)
        self.held, self.renewed_at = kept, now
        return not lost

    def release(self) -> None:
        held, self.held = self.held, []
        for n, _ in held:
            self._update(n, "REMOVE lease_owner, lease_until", {})


class UpstreamCap:
    """domain/ports.UpstreamCapPort on the state table."""

    def __init__(self, table: str, upstreams: UpstreamConfig):
        self.table, self.upstreams = table, upstreams

    def _take(self, upstream: str, n: int, owner: str, now: float) -> bool:
        """Lease block n if it is free or its lease ran out."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table, Key=av({"pk": cap_pk(upstream), "sk": block_sk(n)}),
                UpdateExpression="SET lease_owner = :o, lease_until = :u",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
                ExpressionAttributeValues=av({":o": owner, ":u": int(now + LEASE_SECONDS) + 1, ":now": int(now)}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            # Our own write, applied and retried by botocore after its answer was lost, fails the
            # condition too: the block then carries our owner id.
            item = exc.response.get("Item") or {}
            return bool(item.get("lease_owner", {}).get("S") == owner)
        return True

    def _try(self, upstream: str, sizes: list[int], want: int, owner: str) -> list[tuple[int, int]]:
        """One pass over the blocks in random order: take free ones while they fit in `want` (the
        first one always)."""
        now = _now()
        order = list(range(len(sizes)))
        random.shuffle(order)
        held: list[tuple[int, int]] = []
        slots = 0
        for n in order:
            if slots >= want:
                break
            if held and slots + sizes[n] > want:
                continue
            if self._take(upstream, n, owner, now):
                held.append((n, sizes[n]))
                slots += sizes[n]
        return held

    async def lease(self, upstream: str, want: int, *, max_wait_seconds: float) -> BlockLease | None:
        settings = self.upstreams.upstreams.get(upstream)
        sizes = block_sizes(settings) if settings is not None else []
        if settings is None or not sizes:
            return None
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + max(0.0, min(max_wait_seconds, settings.global_wait_seconds))
        while True:
            held = await asyncio.to_thread(self._try, upstream, sizes, max(1, want), owner)
            pause = random.uniform(*POLL_SECONDS)
            if held or time.monotonic() + pause > deadline:
                return BlockLease(self.table, upstream, owner, held, random.uniform(*RETRY_SECONDS))
            await asyncio.sleep(pause)
