"""Fault injection through the real workflow: local mode (the synthesized state machine in moto, the real
handlers in-process) driven by the official openai SDK, while a seeded schedule

- crashes chunk workers at each step (`SimulatedCrash`, a BaseException: like a Lambda that dies, it
  skips the engine's `except` clean-up, keeps the chunk lease and leaves the SQS message un-acked, so
  the message comes back after the queue's visibility timeout);
- re-sends copies of chunk messages with random delays (duplicate and re-ordered deliveries);
- answers DynamoDB, S3 and SQS calls with throttling / 5xx errors at the HTTP layer (botocore
  `before-send`), so botocore's standard retry mode retries them as it would in AWS;
- marks lines for the dev upstream's 429 / 500 / 400 / slow / timeout behaviour;
- cancels at a random moment, or gives the batch a short completion window so it expires mid-run.

After each run `check_run` verifies the invariants (every custom_id exactly once across output and
error files, counts and usage equal the files, legal status transitions, terminal status, no open
chunk or live lease); `check_quiet` verifies that nothing is left in the chunk queue or its DLQ.
"""
from __future__ import annotations

from .aws_faults import AWS_ERRORS, AppliedThenLost, AwsFaults, RawBody
from .crash import CRASH_STEPS, CrashInjector, SimulatedCrash, install_crash_hooks
from .drive import execute_run
from .invariants import NOT_RUN_CODES, TERMINAL, answer_problem, check_quiet, check_run, queue_depth, where_waiting
from .plan import LineSpec, RunSpec, input_bytes, plan_run
from .report import RunResult, Sweep
from .transitions import TransitionLog, bad_transitions
from .world import (
                    LEASE_MARGIN_SECONDS,
                    QUEUE_VISIBILITY_SECONDS,
                    SERVICE_OVERRIDES,
                    UPSTREAM_TIMEOUT_SECONDS,
                    WORKER_LIMITS,
                    WORKER_TIMEOUT_SECONDS,
                    World,
                    install_worker_limits,
                    replace_worker_timeout,
)

__all__ = [
    "AWS_ERRORS", "CRASH_STEPS", "LEASE_MARGIN_SECONDS", "NOT_RUN_CODES", "QUEUE_VISIBILITY_SECONDS",
    "SERVICE_OVERRIDES", "TERMINAL", "UPSTREAM_TIMEOUT_SECONDS", "WORKER_LIMITS", "WORKER_TIMEOUT_SECONDS",
    "AppliedThenLost", "AwsFaults", "CrashInjector", "LineSpec", "RawBody", "RunResult", "RunSpec",
    "SimulatedCrash", "Sweep", "TransitionLog", "World", "answer_problem", "bad_transitions", "check_quiet",
    "check_run", "execute_run", "input_bytes", "install_crash_hooks", "install_worker_limits", "plan_run",
    "queue_depth", "replace_worker_timeout", "where_waiting",
]
