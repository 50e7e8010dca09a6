"""Whole batches through the real workflow under seeded faults; the invariants hold in every run.

`FAULT_RUNS=N .venv/bin/pytest tests/fault` runs N runs (default: a quick sweep for CI);
`FAULT_SEED` picks the schedule, `FAULT_CONCURRENCY` how many batches run at once, and
`FAULT_REPLAY=SEED:KIND[,SEED:KIND...]` re-runs the runs a summary printed (`seed 202606196 (faults)`).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from . import harness
from .conftest import SWEEPS

pytestmark = pytest.mark.e2e

QUICK_RUNS = 6
KINDS = ("faults", "cancel", "faults", "expire", "faults", "invalid")   # every kind in any sweep of 6+ runs
RUNS = int(os.environ.get("FAULT_RUNS", QUICK_RUNS))


# The suite-wide 600 s timeout fits the quick sweep; a long sweep gets ~15 s a run.
@pytest.mark.timeout(max(600, RUNS * 15))
def test_invariants_hold_under_faults(world, aws_faults):
    runs = RUNS
    seed = int(os.environ.get("FAULT_SEED", "1"))
    concurrency = int(os.environ.get("FAULT_CONCURRENCY", "4"))
    replay = [part.split(":") for part in os.environ.get("FAULT_REPLAY", "").split(",") if part]
    specs = ([harness.plan_run(int(s), kind) for s, kind in replay] if replay else
             [harness.plan_run(seed * 100_003 + i, KINDS[i % len(KINDS)]) for i in range(runs)])
    sweep = harness.Sweep()
    SWEEPS.append(sweep)
    t0 = time.monotonic()
    aws_faults.enabled = True
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for result in pool.map(lambda s: harness.execute_run(world, s), specs):
                sweep.runs.append(result)
    finally:
        aws_faults.enabled = False
    sweep.problems += harness.check_quiet(world, wait_seconds=harness.QUEUE_VISIBILITY_SECONDS * 3)
    sweep.seconds = time.monotonic() - t0
    sweep.aws_injected = aws_faults.injected
    sweep.timed_out = world.timed_out()
    print(sweep.summary())

    assert (sweep.lost, sweep.duplicated, sweep.bad, sweep.non_terminal, sweep.wrong_answers) == (0, 0, 0, 0, 0), \
        "\n".join(sweep.details())
    assert not [r for r in sweep.runs if r.problems] and not sweep.problems, "\n".join(sweep.details())
