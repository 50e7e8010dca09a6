"""Issue 11: the metric helpers other modules call (webhook deliveries; a chunk run's totals) emit one EMF
document each, in the Batchgate namespace, with bounded dimensions and at most 100 latency samples."""
from __future__ import annotations

import json

from batchgate.contract import Metric
from batchgate.domain.ports import LATENCY_SAMPLES, UpstreamTally
from batchgate.observability import chunk_run_metrics, webhook_delivery


def _docs(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def test_a_webhook_delivery_is_one_document(capsys):
    webhook_delivery(ok=True, latency_ms=12.5)
    webhook_delivery(ok=False, latency_ms=3)
    ok, failed = _docs(capsys)
    assert ok["_aws"]["CloudWatchMetrics"][0]["Namespace"] == Metric.NAMESPACE
    assert ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert (ok[Metric.WEBHOOK_DELIVERIES], ok[Metric.WEBHOOK_FAILURES], ok[Metric.WEBHOOK_LATENCY]) == (
        [1.0], [0.0], [12.5])
    assert failed[Metric.WEBHOOK_FAILURES] == [1.0]


def test_a_tenants_model_name_is_a_bounded_dimension_and_latencies_a_bounded_sample(capsys):
    tally = UpstreamTally()
    for i in range(1000):
        tally.request(float(i), 429 if i % 10 == 0 else 200)
    assert tally.requests == 1000 and tally.throttled == 100 and len(tally.latencies_ms) == LATENCY_SAMPLES
    chunk_run_metrics(upstream="default", model="m" * 5000, counts={Metric.LINES_SENT: 7},
                      latencies_ms=tally.latencies_ms)
    (doc,) = _docs(capsys)
    assert len(doc["model"]) == 128 and doc[Metric.LINES_SENT] == [7.0]
    assert len(doc[Metric.UPSTREAM_LATENCY]) == LATENCY_SAMPLES
    assert max(doc[Metric.UPSTREAM_LATENCY]) > 100  # a sample of the whole run, not its first 100 requests
