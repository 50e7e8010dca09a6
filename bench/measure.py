"""How the sections measure: process CPU time, and the peak of Python allocations during a call."""
from __future__ import annotations

import resource
import tracemalloc
from collections.abc import Callable
from typing import Any


def cpu_seconds() -> float:
    """User + system CPU of this process (threads included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak Python allocations while `fn` runs, above what was allocated before (tracemalloc slows
    allocation, so never time the same call)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
