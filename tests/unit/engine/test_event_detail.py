"""Issue 11: a status event's detail carries the Batch object as the API returns it, validates against
the documented schema (docs/events/batch-status.schema.json), and stays under EventBridge's 256 KB."""
from __future__ import annotations

import json

import jsonschema
import orjson

from batchgate.adapters.events import MAX_DETAIL_BYTES, status_detail
from batchgate.models.batches import batch_object
from batchgate.models.records import BatchRecord
from infra.paths import ROOT

SCHEMA = json.loads((ROOT / "docs/events/batch-status.schema.json").read_text())
BATCH_ID = "batch_" + "a" * 32


def _record(**fields) -> BatchRecord:
    base = dict(id=BATCH_ID, tenant="tenant-a", endpoint="/v1/chat/completions", input_file_id="file-x",
                completion_window="24h", status="completed", created_at=100, expires_at=200, completed_at=150,
                total=3, completed=2, failed=1, output_file_id="file-out", error_file_id="file-err",
                input_tokens=10, output_tokens=20, total_tokens=30, metadata={"k": "v"})
    return BatchRecord(**{**base, **fields})


def test_the_detail_keeps_the_four_keys_and_adds_the_batch_object():
    record = _record()
    detail = status_detail("tenant-a", BATCH_ID, "completed", 150, record)
    jsonschema.validate(detail, SCHEMA)
    assert {k: detail[k] for k in ("batch_id", "tenant", "status", "at")} == {
        "batch_id": BATCH_ID, "tenant": "tenant-a", "status": "completed", "at": 150}
    assert detail["batch"] == batch_object(record)
    assert detail["batch"]["output_file_id"] == "file-out" and detail["batch"]["usage"]["total_tokens"] == 30
    assert "tenant" not in detail["batch"] and "errors_truncated" not in detail


def test_a_huge_errors_list_is_cut_to_fit_and_flagged():
    errors = [{"code": "invalid_json", "message": "x" * 400, "param": None, "line": i} for i in range(1, 1001)]
    record = _record(status="failed", failed_at=150, errors=errors, output_file_id=None, error_file_id=None)
    detail = status_detail("tenant-a", BATCH_ID, "failed", 150, record)
    jsonschema.validate(detail, SCHEMA)
    assert detail["errors_truncated"] is True
    kept = detail["batch"]["errors"]["data"]
    assert 0 < len(kept) < len(errors) and kept == errors[:len(kept)]  # the first ones, in order
    size = len(orjson.dumps(detail))
    assert size <= MAX_DETAIL_BYTES and size + len(orjson.dumps(errors[len(kept)])) > MAX_DETAIL_BYTES


def test_the_schema_refuses_a_detail_without_the_batch():
    detail = status_detail("tenant-a", BATCH_ID, "completed", 150)
    try:
        jsonschema.validate(detail, SCHEMA)
    except jsonschema.ValidationError as exc:
        assert "batch" in exc.message
    else:
        raise AssertionError("a detail without the batch object validated")
