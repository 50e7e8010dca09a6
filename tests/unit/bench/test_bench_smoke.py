"""The benchmark machinery at toy sizes, so `python -m bench` keeps working as the engine changes.
No timings are asserted (machines are shared and noisy): only that each section runs the real code
to the end and reports its figures."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from botocore.stub import Stubber

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root, where bench/ lives

from bench import cost
from bench.aws_calls import CallLog
from bench.run import TOY, run_sections


@pytest.mark.timeout(120)
def test_sections_run_the_engine_at_toy_sizes():
    printed: list[str] = []

    summary = run_sections(TOY, ("validation", "worker", "finalize"), out=printed.append)

    assert summary["unavailable"] == {}, "\n".join(printed)
    for key in ("validation_mb_s", "validation_ratio_vs_orjson", "validation_peak_mb", "worker_lines_s",
                "worker_ratio_vs_bare", "finalize_small_mb_s", "finalize_big_mb_s", "finalize_peak_ratio"):
        assert summary[key] > 0, key
    assert any("goal >= 0.5" in line for line in printed)


def test_call_log_counts_calls_and_written_items():
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    log = CallLog()
    log.instrument(client)
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {}, None)
        stub.add_response("transact_write_items", {}, None)
        client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"pk": {"S": str(i)}}}}
                                                    for i in range(3)]})
        client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}}}},
                                                   {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}}])

    assert log.by_operation() == {"dynamodb.BatchWriteItem": 1, "dynamodb.TransactWriteItems": 1}
    assert log.write_items["other"] == 3
    assert log.transact_items["other"] == 2


def test_cost_model_scales_per_line_and_adds_status_polls():
    measured = cost.Measured(
        lines=1000, calls={"dynamodb.GetItem": 10, "s3.PutObject": 4, "sqs.ReceiveMessage": 2},
        write_items=5, transact_items=4, event_entries=3,
        invocations={"chunk_worker": (2, 1.0), "wf_validate": (1, 0.5)}, sfn_transitions=5, api_requests=2)
    a = cost.Assumptions(model_latency_s=1.0, in_flight=50, status_poll_s=2.0)

    out = cost.model(measured, a)

    # 500 lines per chunk at 50 in flight: 10 s waiting + 0.5 s measured per chunk, stretched to the
    # 1024 MB worker's share of a vCPU (1769 MB each) -> 5 polls each
    wall = 10 + 0.5 + 0.5 * (1769 / 1024 - 1)
    assert out["worker_seconds_per_chunk"] == pytest.approx(wall)
    assert out["modelled_extra_status_polls_per_chunk"] == 5
    assert out["aws_calls_per_line_at_model_latency"] == pytest.approx((16 + 10) / 1000)
    gb_s = 2 * wall * 1.0 + 0.5 * 1.0
    assert out["breakdown_usd_per_million_lines"]["lambda_compute"] == pytest.approx(
        gb_s * cost.PRICES["lambda_arm64_gb_s"] * 1000)
    assert out["usd_per_million_lines"] == pytest.approx(sum(out["breakdown_usd_per_million_lines"].values()))
