"""Driving a batch through the official openai SDK: wait until it reaches a status; wait for an event."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import openai

from batchgate.domain.status import TERMINAL


def wait_for_batch(client: openai.OpenAI, batch_id: str, statuses=TERMINAL, timeout: float = 60,
                   poll: float = 0.2, each: Callable | None = None):
    """The batch once its status is in `statuses`, or as it is at the deadline (callers assert the
    status they need). `each` sees every batch retrieved meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if each:
            each(batch)
        if batch.status in statuses or time.monotonic() > deadline:
            return batch
        time.sleep(poll)


def until(condition: Callable[[], object], guard: float = 60.0, poll: float = 0.01):
    """Wait for an event: the first true value of condition(). The guard only stops a hang (the test
    fails then); the event decides, never the clock."""
    deadline = time.monotonic() + guard
    while not (value := condition()):
        assert time.monotonic() < deadline, f"the event never came within the {guard} s hang guard"
        time.sleep(poll)
    return value


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM a process the test started, and SIGKILL it if it has not ended within the grace period."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
