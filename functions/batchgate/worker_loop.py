"""One long-lived asyncio event loop per thread for the chunk worker.

asyncio.run makes a new loop per call; the upstream connection pools (bound to a loop,
adapters/upstream.py) and the loop's thread pool would then last one invocation. Lambda runs one
invocation at a time on one thread; local mode runs workers on a thread pool, so each thread gets its
own loop.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_thread = threading.local()


class _ThreadLoop:
    """Closes the loop when its thread ends (local mode's and the tests' threads come and go)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if self.loop.is_running() or self.loop.is_closed():
            return
        try:  # as asyncio.run ends: async generators first (the upstream pools close their connections)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        except Exception:  # a loop going away must not raise from a destructor
            pass
        finally:
            self.loop.close()


def run_on_worker_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on this thread's long-lived event loop."""
    holder = getattr(_thread, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _thread.holder = _ThreadLoop()
    return holder.loop.run_until_complete(coro)
