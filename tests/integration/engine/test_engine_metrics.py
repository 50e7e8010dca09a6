"""Issue 11: a chunk run's metrics are one EMF document (not one per line) carrying the run's totals,
with dimensions (service, upstream, model); a batch that ends reports its duration by status."""
from __future__ import annotations

import json

from engine_helpers import chat_lines

from batchgate.contract import Metric


def _documents(text: str, metric: str) -> list[dict]:
    docs = []
    for line in text.splitlines():
        if line.startswith('{"_aws"'):
            doc = json.loads(line)
            names = {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
            if metric in names:
                docs.append(doc)
    return docs


def test_a_chunk_run_emits_its_totals_once(engine, capsys):
    # Given 4 lines in one chunk: one rate-limited once (retried), one refused with 400
    markers = {0: "__fail_429_ms_once__", 2: "__fail_400__"}
    batch_id = engine.create_batch(chat_lines(4, model="metrics-model", extra=markers, prefix="m"))
    capsys.readouterr()
    # When the batch runs to the end
    batch = engine.run_all(batch_id)
    emitted = capsys.readouterr().out
    # Then exactly one document carries the run's line totals
    runs = _documents(emitted, Metric.LINES_SENT)
    assert len(runs) == 1, emitted
    run = runs[0]
    directive = run["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == Metric.NAMESPACE == "Batchgate"
    assert directive["Dimensions"] == [list(Metric.CHUNK_DIMENSIONS)]
    assert (run["service"], run["upstream"], run["model"]) == ("batchgate", "default", "metrics-model")
    out = engine.file_lines(batch.output_file_id)
    tokens_in = sum(o["response"]["body"]["usage"]["prompt_tokens"] for o in out)
    tokens_out = sum(o["response"]["body"]["usage"]["completion_tokens"] for o in out)
    assert {name: run[name] for name in (
        Metric.LINES_SENT, Metric.LINES_ANSWERED, Metric.LINES_FAILED, Metric.LINES_DEFERRED,
        Metric.REQUESTS_RETRIED, Metric.UPSTREAM_THROTTLED, Metric.INPUT_TOKENS, Metric.OUTPUT_TOKENS)} == {
        Metric.LINES_SENT: [4.0], Metric.LINES_ANSWERED: [3.0], Metric.LINES_FAILED: [1.0],
        Metric.LINES_DEFERRED: [0.0], Metric.REQUESTS_RETRIED: [1.0], Metric.UPSTREAM_THROTTLED: [1.0],
        Metric.INPUT_TOKENS: [float(tokens_in)], Metric.OUTPUT_TOKENS: [float(tokens_out)]}
    assert tokens_in > 0 and tokens_out > 0 and tokens_in == batch.input_tokens
    # one latency sample per upstream request (4 lines + 1 retry), in milliseconds
    assert len(run[Metric.UPSTREAM_LATENCY]) == 5 and all(ms >= 0 for ms in run[Metric.UPSTREAM_LATENCY])
    # And the batch's end reports its duration under its terminal status
    ended = _documents(emitted, Metric.BATCH_DURATION)
    assert [(d["status"], d[Metric.BATCH_DURATION][0] >= 0) for d in ended] == [("completed", True)]
