"""Logger, Tracer and Metrics in one place, and the one decorator every Lambda handler wears.

- Logger: JSON logs, each line carrying the invocation's context (request id, cold start); handlers add
  `batch_id`, `tenant` and `chunk` where they know them.
- Tracer: the invocation and its AWS calls as X-Ray segments when the environment turns tracing on
  (Powertools disables it outside Lambda: tests and local mode trace nothing).
- Metrics: CloudWatch embedded metric format (namespace `Batchgate`), flushed at the end of each
  invocation; `single_metric` for counts that carry their own dimension.
- `lambda_handler(requires=...)`: the settings a function cannot run without are checked before its
  first line of work, so a missing resource name fails the invocation loudly instead of being read as "".
"""
from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "batchgate"
NAMESPACE = "Batchgate"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# An invocation that had nothing to count (most API calls) flushes no metrics; Powertools warns on
# each such flush, which says nothing here.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

F = TypeVar("F", bound=Callable[..., Any])


class MissingSetting(RuntimeError):
    """A deployment that lacks a resource name (a contract.Env variable) this function needs."""


def lambda_handler(*, requires: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Log context, tracing and metrics for a handler, after checking that the environment variables in
    `requires` (contract.Env names) are set."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def checked(event: Any, context: Any) -> Any:
            missing = [name for name in requires if not os.environ.get(name)]
            if missing:
                raise MissingSetting(f"{', '.join(missing)} not set: this function cannot run without "
                                     "it (infra/stacks/service.py sets it)")
            try:
                return fn(event, context)
            finally:
                logger.thread_safe_clear_keys()  # what `log_keys` added never reaches the next invocation

        checked.requires = requires  # type: ignore[attr-defined]  # (copied outward by functools.wraps)
        traced = tracer.capture_lambda_handler(metrics.log_metrics(checked))
        return logger.inject_lambda_context(traced)  # type: ignore[return-value]
    return wrap


def log_keys(**keys: object) -> None:
    """Keys on every log line for the rest of this invocation (batch_id, tenant, chunk). Per thread, as
    local mode runs invocations side by side in one process."""
    logger.thread_safe_append_keys(**keys)


def count(name: str, dimension: str, value: str) -> None:
    """One count with its own dimension (e.g. ChunkRuns by outcome), emitted at once."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name=dimension, value=value)
