"""List parameters, retrieve and the cancel rules of the batches domain (in-memory ports)."""
from __future__ import annotations

import pytest

from batchgate import errors, ids
from batchgate.domain import batches as domain
from batchgate.models.records import BatchRecord

TERMINAL_OR_BUSY = ["completed", "failed", "expired", "finalizing"]


def put(batches, tenant="t1", status="validating", **extra):
    batch_id = ids.batch_id()
    batches.put_new(BatchRecord(id=batch_id, tenant=tenant, status=status, endpoint="/v1/chat/completions",
                                input_file_id="file-x", completion_window="24h", created_at=1,
                                expires_at=86401, **extra))
    return batch_id


@pytest.mark.parametrize("raw", ["0", "101", "-1", "abc", "1.5"])
def test_a_bad_limit_is_400_invalid_value(raw):
    with pytest.raises(errors.InvalidRequest) as caught:
        domain.parse_limit(raw)
    assert (caught.value.param, caught.value.code) == ("limit", "invalid_value")
    assert f"'{raw}'" in caught.value.message


def test_limit_default_and_bounds():
    assert domain.parse_limit(None) == 20
    assert domain.parse_limit("1") == 1 and domain.parse_limit("100") == 100


@pytest.mark.parametrize("raw", ["file-abc", "batch_XYZ", "batch_" + "0" * 31])
def test_a_bad_after_is_400_invalid_value(raw):
    with pytest.raises(errors.InvalidRequest) as caught:
        domain.parse_after(raw)
    assert (caught.value.param, caught.value.code) == ("after", "invalid_value")


@pytest.mark.parametrize("batch_id", ["nope", "batch_" + "g" * 32])
def test_retrieve_of_a_malformed_or_unknown_id_is_404(batches, batch_id):
    with pytest.raises(errors.NotFound) as caught:
        domain.get_batch("t1", batch_id, batches)
    assert caught.value.envelope()["error"] == {"message": f"No such Batch object: {batch_id}",
                                                "type": "invalid_request_error", "param": "batch_id",
                                                "code": None}


def test_another_tenants_batch_is_404(batches):
    batch_id = put(batches, tenant="t2")
    with pytest.raises(errors.NotFound):
        domain.get_batch("t1", batch_id, batches)


def test_cancel_while_validating_moves_to_cancelling_without_a_token(batches, workflow):
    batch_id = put(batches)
    item = domain.cancel_batch("t1", batch_id, batches=batches, workflow=workflow, now=5)
    assert item.status == "cancelling" and item.cancelling_at == 5
    assert workflow.failed_tokens == []


def test_cancel_while_in_progress_fails_the_waiting_task(batches, workflow):
    batch_id = put(batches, status="in_progress", task_token="tok")
    item = domain.cancel_batch("t1", batch_id, batches=batches, workflow=workflow)
    assert item.status == "cancelling"
    assert workflow.failed_tokens == [("tok", "Batch.Cancelled", "cancelled by user")]


@pytest.mark.parametrize("status", ["cancelling", "cancelled"])
def test_cancel_is_idempotent(batches, workflow, status):
    batch_id = put(batches, status=status)
    assert domain.cancel_batch("t1", batch_id, batches=batches, workflow=workflow).status == status
    assert workflow.failed_tokens == []


@pytest.mark.parametrize("status", TERMINAL_OR_BUSY)
def test_cancel_of_a_finished_batch_is_409_not_retryable(batches, workflow, status):
    batch_id = put(batches, status=status)
    with pytest.raises(errors.Conflict) as caught:
        domain.cancel_batch("t1", batch_id, batches=batches, workflow=workflow)
    assert caught.value.status == 409
    assert caught.value.envelope()["error"] == {
        "message": f"Cannot cancel a batch with status '{status}'.", "type": "invalid_request_error",
        "param": None, "code": None}
    assert caught.value.headers["x-should-retry"] == "false"


def test_cancel_racing_a_completion_reports_the_status_that_won(batches, workflow):
    batch_id = put(batches, status="in_progress")
    batches.before_transition = lambda: batches.update_fields("t1", batch_id, {"status": "finalizing"})
    with pytest.raises(errors.Conflict) as caught:
        domain.cancel_batch("t1", batch_id, batches=batches, workflow=workflow)
    assert "'finalizing'" in caught.value.message


def test_cancel_racing_another_cancel_returns_the_batch(batches, workflow):
    batch_id = put(batches, status="in_progress")
    batches.before_transition = lambda: batches.update_fields("t1", batch_id, {"status": "cancelling"})
    assert domain.cancel_batch("t1", batch_id, batches=batches, workflow=workflow).status == "cancelling"


# -- ids: newest first to the millisecond (issue 8) ------------------------------------------------
def test_batch_ids_sort_by_millisecond_then_id_and_legacy_ids_stay_readable(monkeypatch):
    clock = iter([1_800_000_000.001, 1_800_000_000.999, 1_800_000_000.5, 1_800_000_000.5])
    monkeypatch.setattr(ids, "_clock", lambda: next(clock))
    a, b, c, d = (ids.batch_id() for _ in range(4))
    assert all(ids.BATCH_ID.match(i) for i in (a, b, c, d))
    assert [ids.batch_created_ms(i) for i in (a, b, c, d)] == [
        1_800_000_000_001, 1_800_000_000_999, 1_800_000_000_500, 1_800_000_000_500]
    assert sorted([a, b, c, d], reverse=True)[:1] == [b] and sorted([a, b, c, d])[0] == a
    assert sorted([c, d]) in ([c, d], [d, c]) and max(c, d) < b and min(c, d) > a
    # An id made before this scheme (8 hex seconds + 24 random hex) is still valid, still found by id,
    # and sorts below every new id (it is older), by its second.
    legacy = f"batch_{1_790_000_000:08x}" + "ab" * 12
    assert ids.BATCH_ID.match(legacy) and legacy < a
    assert ids.batch_created_ms(legacy) == 1_790_000_000_000


def test_an_explicit_second_outside_the_clock_still_makes_an_id_of_that_second(monkeypatch):
    monkeypatch.setattr(ids, "_clock", lambda: 1_800_000_000.25)
    assert ids.batch_created_ms(ids.batch_id(1_800_000_000)) == 1_800_000_000_250
    assert ids.batch_created_ms(ids.batch_id(1_700_000_000)) == 1_700_000_000_000
