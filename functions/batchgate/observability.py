"""Logger, Tracer and Metrics in one place, and the one decorator every Lambda handler wears.

- Logger: JSON logs, each line carrying the invocation's context (request id, cold start); handlers add
  `batch_id`, `tenant` and `chunk` where they know them.
- Tracer: the invocation and its AWS calls as X-Ray segments when the environment turns tracing on
  (Powertools disables it outside Lambda: tests and local mode trace nothing).
- Metrics: CloudWatch embedded metric format (namespace `Batchgate`; names in `contract.Metric`, which the
  dashboard reads), flushed at the end of each invocation; `count`, `batch_ended`, `webhook_delivery` and
  `chunk_run_metrics` emit one document each with its own dimensions (`_document`); a chunk run's totals
  go once (never per line: the worker's hot path). Powertools' POWERTOOLS_METRICS_DISABLED silences them
  all (local mode sets it: its stdout is the CLI's).
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
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from batchgate.contract import Metric

SERVICE = Metric.SERVICE
NAMESPACE = Metric.NAMESPACE
# CloudWatch keeps at most 100 values per metric in one EMF document, and Powertools prints a metric the
# moment it holds 100 (splitting the document, and ignoring POWERTOOLS_METRICS_DISABLED): stay below.
MAX_SAMPLES = 99
# A dimension value is at most 1024 characters; models are tenants' strings, so kept short.
MAX_DIMENSION_CHARS = 128

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


def _document(dimensions: dict[str, str], values: list[tuple[str, MetricUnit, float]]) -> None:
    """One EMF document, emitted at once: its own metric set (invocations overlap in local mode's
    threads), dimensions `service` + `dimensions`, and (name, unit, value) entries. (Powertools'
    `single_metric` would ignore POWERTOOLS_METRICS_DISABLED; `flush_metrics` honours it.)"""
    if is_metrics_disabled():
        return
    doc = EphemeralMetrics(namespace=NAMESPACE)
    doc.add_dimension(name="service", value=SERVICE)
    for name, value in dimensions.items():
        doc.add_dimension(name=name, value=value)
    for name, unit, number in values:
        doc.add_metric(name=name, unit=unit, value=number)
    doc.flush_metrics()


def count(name: str, dimension: str, value: str) -> None:
    """One count with its own dimension (e.g. ChunkRuns by outcome), emitted at once."""
    _document({dimension: value}, [(name, MetricUnit.Count, 1.0)])


def _dimension(value: str | None) -> str:
    return (value or "none")[:MAX_DIMENSION_CHARS]


def chunk_run_metrics(*, upstream: str, model: str | None, counts: dict[str, int],
                      latencies_ms: list[float]) -> None:
    """One EMF document for one chunk run: `counts` (contract.Metric names -> totals over the run's lines)
    and a sample of upstream latencies, with dimensions (service, upstream, model)."""
    values: list[tuple[str, MetricUnit, float]] = [(name, MetricUnit.Count, value) for name, value in counts.items()]
    values += [(Metric.UPSTREAM_LATENCY, MetricUnit.Milliseconds, round(ms, 3)) for ms in latencies_ms[:MAX_SAMPLES]]
    _document({"upstream": _dimension(upstream), "model": _dimension(model)}, values)


def batch_ended(status: str, seconds: float) -> None:
    """A batch reached a terminal status: its count and duration (created_at to now) by status."""
    _document({"status": status}, [(Metric.BATCH_DURATION, MetricUnit.Seconds, max(0.0, seconds))])


def webhook_delivery(*, ok: bool, latency_ms: float) -> None:
    """One webhook delivery attempt (for the webhooks sender): WebhookDeliveries 1, WebhookFailures 1
    when it failed (no answer, or not 2xx), WebhookLatency in ms; dimension (service)."""
    _document({}, [(Metric.WEBHOOK_DELIVERIES, MetricUnit.Count, 1.0),
                   (Metric.WEBHOOK_FAILURES, MetricUnit.Count, 0.0 if ok else 1.0),
                   (Metric.WEBHOOK_LATENCY, MetricUnit.Milliseconds, max(0.0, latency_ms))])
