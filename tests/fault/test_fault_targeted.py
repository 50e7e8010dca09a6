"""Targeted faults: a crash at every worker step (all in one go, each in its own batch), and the
faults the random sweep does not schedule (a write applied whose answer was lost, a workflow Lambda
that fails once, a cancel before validation starts)."""
from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.sdk import wait_for_batch

from batchgate.handlers import wf_finalize, wf_validate

from . import harness
from .conftest import SWEEPS

pytestmark = pytest.mark.e2e


def _plain_run(seed: int, lines: int = 20, crash: set | None = None) -> harness.RunSpec:
    return harness.RunSpec(seed=seed, kind="faults",
                           lines=[harness.LineSpec(f"t{seed}-l{i}", "", True) for i in range(lines)],
                           crash_points=crash or set(), duplicates=0, cancel_after=None, window_seconds=None)


def _explain(result: harness.RunResult) -> str:
    return (f"{result.batch_id} {result.status}: lost {result.lost}, duplicated {result.duplicated}, "
            f"transitions {result.transitions}, bad {result.bad_transitions}, problems {result.problems[:5]}")


def test_a_crash_at_every_worker_step_loses_nothing(world):
    # Given one batch per worker step, each crashing the first time its worker reaches that step
    specs = [_plain_run(900 + i, lines=25, crash={(step, 1)}) for i, step in enumerate(harness.CRASH_STEPS)]
    sweep = harness.Sweep()
    SWEEPS.append(sweep)
    t0 = time.monotonic()

    # When they all run (each run waits for its batch's terminal status; the bound only catches a hang:
    # a crash costs a visibility timeout, and all eight take ~25 s on an idle machine)
    with ThreadPoolExecutor(len(specs)) as pool:
        sweep.runs.extend(pool.map(lambda s: harness.execute_run(world, s, timeout=300), specs))
    sweep.problems += harness.check_quiet(world, wait_seconds=harness.QUEUE_VISIBILITY_SECONDS * 3)
    sweep.seconds = time.monotonic() - t0
    sweep.timed_out = world.timed_out()

    # Then every step crashed once, and every batch completed with each line exactly once
    assert sorted(s for r in sweep.runs for s in r.crash_steps) == sorted(f"{s}#1" for s in harness.CRASH_STEPS)
    assert all(r.status == "completed" for r in sweep.runs), "\n".join(sweep.details())
    assert (sweep.lost, sweep.duplicated, sweep.bad) == (0, 0, 0), "\n".join(sweep.details())
    assert not [r for r in sweep.runs if r.problems] and not sweep.problems, "\n".join(sweep.details())


def test_a_lease_claim_whose_answer_is_lost_does_not_strand_the_chunk(world):
    # Given the first chunk claim of the batch is applied by DynamoDB but its answer is lost (500),
    # so botocore retries it and the retry fails its own condition (the lease is now live)
    # When a plain batch runs
    with harness.AppliedThenLost("dynamodb", "UpdateItem", b"lease_owner = :o").installed() as fault:
        result = harness.execute_run(world, _plain_run(950), timeout=20)

    # Then it still completes, every line once
    assert fault.fired == 1
    assert result.status == "completed", _explain(result)
    assert (result.lost, result.duplicated, result.bad_transitions, result.problems) == (0, 0, [], [])


def test_a_finalize_invocation_that_fails_once_is_retried(world, monkeypatch):
    # Given the Finalize function fails the first time it runs for the batch
    original, failed = wf_finalize.finalize_batch, []

    def flaky_finalize(tenant, batch_id, *a, **kw):
        if not failed:
            failed.append(batch_id)
            raise RuntimeError("simulated Finalize crash (e.g. Lambda timeout)")
        return original(tenant, batch_id, *a, **kw)

    monkeypatch.setattr(wf_finalize, "finalize_batch", flaky_finalize)

    # When a plain batch runs
    result = harness.execute_run(world, _plain_run(960), timeout=20)

    # Then the workflow runs Finalize again and the batch completes
    assert result.status == "completed", _explain(result)
    assert failed
    assert (result.lost, result.duplicated, result.bad_transitions, result.problems) == (0, 0, [], [])


# A terminal write is a transaction (it gives back the batch's quota share); the others are UpdateItems.
@pytest.mark.parametrize("operation, status", [("TransactWriteItems", "completed"), ("UpdateItem", "finalizing")])
def test_a_status_write_whose_answer_is_lost_still_publishes_its_event(world, operation, status):
    # Given a status write is applied but its answer is lost (500, then a retry whose status condition
    # fails because the first attempt already moved the batch)
    # When a plain batch runs
    with harness.AppliedThenLost("dynamodb", operation, b'":v0": {"S": "%s"}' % status.encode()).installed() as fault:
        result = harness.execute_run(world, _plain_run(970), timeout=20)

    # Then it completes and its status events still tell the whole story, batch.completed included
    assert fault.fired == 1
    assert result.status == "completed", _explain(result)
    assert result.transitions == ["in_progress", "finalizing", "completed"], _explain(result)


def test_a_cancel_before_validation_starts_reports_every_line_as_cancelled(world, monkeypatch):
    # Given the Validate step starts only after the user's cancel (Step Functions may start it late)
    cancelled = _hold_validate(monkeypatch)
    spec = _plain_run(980, lines=15)
    client = world.sdk()
    file = client.files.create(file=("c.jsonl", io.BytesIO(harness.input_bytes(spec)), "application/jsonl"),
                               purpose="batch")
    batch = world.create_batch(client, file.id, None)

    # When it is cancelled at once
    client.batches.cancel(batch.id)
    cancelled.set()
    deadline = time.monotonic() + 20
    while batch.status not in harness.TERMINAL and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch.id)

    # Then every line is in the error file as batch_cancelled, and counted in total only
    result = harness.RunResult(spec, batch_id=batch.id, status=batch.status)
    harness.check_run(world, client, spec, batch, result)
    assert batch.status == "cancelled"
    assert (result.lost, result.duplicated, result.bad_transitions, result.problems) == (0, 0, [], []), \
        _explain(result)


def test_a_batch_that_has_not_ended_is_reported_with_where_its_execution_waits(world, monkeypatch):
    # Given a batch whose Validate step is held until the run has been reported (an event, not a race)
    reported = _hold_validate(monkeypatch)
    spec = _plain_run(990, lines=4)

    # When the run's deadline passes first
    try:
        result = harness.execute_run(world, spec, timeout=0.5)
    finally:
        reported.set()

    # Then the run says so, and where the execution is: running, in one of the workflow's states
    assert result.problems[0].startswith("not terminal after the deadline"), result.problems
    where = result.problems[1]
    assert where.startswith("workflow: RUNNING; ") and "StateEntered" in where, where
    assert any(state in where for state in ("Validate", "Dispatch")), where
    wait_for_batch(world.sdk(), result.batch_id, timeout=60, poll=0.5)  # let it end before the next test


def _hold_validate(monkeypatch) -> threading.Event:
    """Hold every Validate step at its start until the returned event is set (30 s hang guard)."""
    release = threading.Event()
    original = wf_validate.validate_batch

    def held(*a, **kw):
        release.wait(30)
        return original(*a, **kw)

    monkeypatch.setattr(wf_validate, "validate_batch", held)
    return release
