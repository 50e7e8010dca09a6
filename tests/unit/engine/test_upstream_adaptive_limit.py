"""The upstream client's adaptive limit (issue 10): against a server that serves N requests at once and
answers 429 above that, the requests in flight settle near N with few 429s; without 429s it keeps its
full concurrency. In-process (httpx's MockTransport on one event loop): decided by counts, not clocks."""
from __future__ import annotations

import asyncio

import httpx

from batchgate.adapters.upstream import AdaptiveLimit, UpstreamClient
from batchgate.contract import UpstreamSettings


class LimitedServer:
    """Serves `capacity` requests at once (each takes a few event-loop turns); 429 above that."""

    def __init__(self, capacity: int | None):
        self.capacity, self.active, self.peak, self.ok, self.throttled = capacity, 0, 0, 0, 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.capacity is not None and self.active >= self.capacity:
            self.throttled += 1
            return httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after-ms": "1"})
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0.002)
        finally:
            self.active -= 1
        self.ok += 1
        return httpx.Response(200, json={"id": "x"})


def _send_all(server: LimitedServer, lines: int, concurrency: int) -> list[int]:
    conf = UpstreamSettings(base_url="http://up.test/v1", concurrency=concurrency, max_attempts=50)
    client = UpstreamClient(conf, None, backoff_base=0.001, backoff_cap=0.01,
                            transport=httpx.MockTransport(server))

    async def go() -> list[int]:
        async with client:
            lanes = asyncio.Semaphore(concurrency)   # the worker's lanes: `concurrency` lines at once

            async def one() -> int:
                async with lanes:
                    answer = await client.post("/v1/chat/completions", b"{}")
                    return answer.status_code
            return await asyncio.gather(*(one() for _ in range(lines)))
    return asyncio.run(go())


def test_a_rate_limited_upstream_is_kept_near_its_limit_with_few_429s():
    server = LimitedServer(capacity=32)
    statuses = _send_all(server, lines=20_000, concurrency=64)   # starts at 64: one burst of 429s, then AIMD
    assert statuses == [200] * 20_000
    assert server.throttled <= 0.05 * (server.ok + server.throttled), (server.ok, server.throttled)
    assert server.peak == 32


def test_without_429s_the_full_concurrency_is_used():
    server = LimitedServer(capacity=None)
    _send_all(server, lines=500, concurrency=32)
    assert server.throttled == 0 and server.peak == 32


def test_the_window_shrinks_once_per_window_and_grows_back():
    async def go():
        limit = AdaptiveLimit(10)
        assert limit.window == 10           # the upstream's concurrency until a 429 says otherwise
        epochs = [await limit.acquire() for _ in range(10)]
        for e in epochs[:5]:            # five 429s of requests sent in the same window: one decrease
            limit.release(e, throttled=True)
        assert limit.window == 8.5 and limit.epoch == 1
        for e in epochs[5:]:
            limit.release(e, throttled=False)
        assert 8.5 < limit.window < 9.5     # after a 429: one more per window of answers
        for _ in range(100):            # answers grow it back, up to the ceiling
            limit.release(await limit.acquire(), throttled=False)
        assert limit.window == 10
    asyncio.run(go())
