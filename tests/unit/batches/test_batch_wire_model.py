"""The Batch object the SDK sees: every key, explicit nulls, nothing internal."""
from __future__ import annotations

from openai.types import Batch

from batchgate.domain import batches as domain
from batchgate.models.batches import batch_list, batch_object

BATCH_KEYS = {"id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window",
              "status", "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
              "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
              "request_counts", "usage", "metadata"}


def new_item(**over):
    request = domain.parse_create({"input_file_id": "file-" + "A" * 24, "endpoint": "/v1/embeddings",
                                   "completion_window": "24h"})
    item = domain.new_batch_record("t1", request, now=1_700_000_000, window_seconds=86400)
    # what the engine adds around the wire fields
    return item.model_copy(update={"task_token": "secret", "chunk_count": 3, "chunks_done": 1,
                                   "output_expires_after_seconds": 3600, **over})


def test_a_new_batch_has_every_key_with_explicit_nulls():
    obj = batch_object(new_item())
    assert set(obj) == BATCH_KEYS
    assert obj["object"] == "batch" and obj["status"] == "validating"
    assert obj["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert obj["usage"] is None and obj["errors"] is None and obj["metadata"] is None
    assert obj["in_progress_at"] is None and obj["output_file_id"] is None
    assert obj["expires_at"] == obj["created_at"] + 86400
    Batch.model_validate(obj)  # the official SDK type accepts it


def test_internal_fields_never_leak():
    text = str(batch_object(new_item()))
    for secret in ("secret", "T#t1", "BATCH#", "chunk_count", "tenant", "output_expires_after_seconds"):
        assert secret not in text


def test_a_completed_batch_shows_counts_and_usage():
    obj = batch_object(new_item(
        status="completed", completed_at=1_700_000_100, total=10, completed=8, failed=2,
        output_file_id="file-" + "B" * 24, input_tokens=100, cached_tokens=20, output_tokens=50,
        reasoning_tokens=5, total_tokens=150, model="gpt-test"))
    assert obj["request_counts"] == {"total": 10, "completed": 8, "failed": 2}
    assert obj["usage"] == {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 20},
                            "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 5},
                            "total_tokens": 150}
    assert obj["model"] == "gpt-test"
    assert Batch.model_validate(obj).usage.input_tokens_details.cached_tokens == 20


def test_usage_is_null_until_the_batch_has_results():
    assert batch_object(new_item(status="in_progress", input_tokens=5, total_tokens=5))["usage"] is None


def test_partial_usage_numbers_default_to_zero():
    obj = batch_object(new_item(status="cancelled", input_tokens=7))
    assert obj["usage"]["output_tokens"] == 0 and obj["usage"]["total_tokens"] == 0


def test_errors_are_a_list_object():
    errs = [{"code": "invalid_json_line", "message": "bad", "line": 3}]
    obj = batch_object(new_item(status="failed", failed_at=1, errors=errs))
    assert obj["errors"] == {"object": "list", "data": [
        {"code": "invalid_json_line", "message": "bad", "param": None, "line": 3}]}
    Batch.model_validate(obj)


def test_list_shape():
    items = [new_item(), new_item()]
    page = batch_list(items, has_more=True)
    assert page["object"] == "list" and page["has_more"] is True
    assert page["first_id"] == items[0].id and page["last_id"] == items[1].id
    assert batch_list([], has_more=False) == {"object": "list", "data": [], "first_id": None,
                                              "last_id": None, "has_more": False}
