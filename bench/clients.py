"""Bare HTTP clients side by side: each POSTs the same bodies to the same upstream, `in_flight` at a
time (one task per in-flight slot, as the worker's lanes), and reads every answer. What the worker's
HTTP client costs per request, before any Batchgate code: the figures that chose the client.

Each client gets a pool of exactly `in_flight` connections, kept alive, as UpstreamClient sets it up.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Runner = Callable[[str, list[bytes], int], Awaitable[int]]


async def _lanes(in_flight: int, bodies: list[bytes], send: Callable[[bytes], Awaitable[bool]]) -> int:
    ok = 0
    todo = iter(bodies)

    async def lane() -> None:
        nonlocal ok
        for body in todo:
            answered = await send(body)   # not `ok += await ...`: that reads `ok` before the await
            ok += answered
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return ok


async def run_httpx(base_url: str, bodies: list[bytes], in_flight: int) -> int:
    import httpx
    url = base_url + "/chat/completions"
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5),
                                 limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
                                 headers={"content-type": "application/json"}) as client:
        async def send(body: bytes) -> bool:
            resp = await client.post(url, content=body)
            return resp.status_code == 200 and bool(resp.content)
        return await _lanes(in_flight, bodies, send)


async def run_httpx2(base_url: str, bodies: list[bytes], in_flight: int) -> int:
    import httpx2
    url = base_url + "/chat/completions"
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, connect=5),
                                  limits=httpx2.Limits(max_connections=in_flight,
                                                       max_keepalive_connections=in_flight),
                                  headers={"content-type": "application/json"}) as client:
        async def send(body: bytes) -> bool:
            resp = await client.post(url, content=body)
            return resp.status_code == 200 and bool(resp.content)
        return await _lanes(in_flight, bodies, send)


async def run_aiohttp(base_url: str, bodies: list[bytes], in_flight: int) -> int:
    import aiohttp
    url = base_url + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=in_flight, limit_per_host=in_flight)
    async with aiohttp.ClientSession(connector=connector, headers={"content-type": "application/json"},
                                     timeout=aiohttp.ClientTimeout(total=30, connect=5)) as session:
        async def send(body: bytes) -> bool:
            async with session.post(url, data=body) as resp:
                content = await resp.read()
                return resp.status == 200 and bool(content)
        return await _lanes(in_flight, bodies, send)


def _available() -> dict[str, Runner]:
    out: dict[str, Runner] = {"httpx": run_httpx}
    for name, runner in (("aiohttp", run_aiohttp), ("httpx2", run_httpx2)):
        try:
            __import__(name)
        except ImportError:
            continue
        out[name] = runner
    return out


CLIENTS = _available()
