"""The worker's lane scheduler: `width` lanes, each sending its next item as soon as its last one is
answered (a pool connection left idle costs httpcore CPU on every request), while the caller's `tick`
runs between waits: it polls, flushes and decides when to stop, with its slow calls on a thread so the
lanes never wait for them."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def run_lanes(width: int, take: Callable[[], T | None], send: Callable[[T], Awaitable[None]],
                    tick: Callable[[], Awaitable[float | None]], first_wait: float) -> None:
    """Run until every lane finds `take()` empty (None: no item left, or the caller is stopping), or
    until `tick` answers None: then the items in flight are abandoned (cancelled; their answers are
    not recorded). `tick` otherwise answers how long to wait at most before it runs again. A lane's
    exception ends the run with it. No lane is left running when this returns."""
    async def lane() -> None:
        while (item := take()) is not None:
            await send(item)

    lanes = {asyncio.create_task(lane()) for _ in range(width)}
    wait: float | None = first_wait
    try:
        while lanes:
            done, lanes = await asyncio.wait(lanes, timeout=wait, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
            wait = await tick()
            if wait is None:
                return
    finally:
        await abandon(lanes)


async def abandon(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel items in flight and wait until they are gone."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
