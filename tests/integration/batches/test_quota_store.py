"""The quota counters in the state table (moto): taken with the batch item, given back once by the
terminal transition, whatever the retries and rivals."""
from __future__ import annotations

import threading

import pytest
from batches_helpers import TABLE

from batchgate.adapters.batch_store import QUOTA_ACTIVE_SK, BatchStore, quota_tokens_sk
from batchgate.adapters.events import EventPublisher
from batchgate.domain import status
from batchgate.domain.ports import QuotaExceeded
from batchgate.models.records import BatchRecord
from batchgate_local import atomic


@pytest.fixture
def store(aws_env):
    # DynamoDB applies each write (a transaction too) atomically; moto only under local mode's lock
    # (idempotent, and left installed as the engine tests leave it: it only locks).
    atomic.install()
    return BatchStore(TABLE, EventPublisher(None))


def _batch(n: int, tenant: str = "acme") -> BatchRecord:
    return BatchRecord(id=f"batch_{n:032x}", tenant=tenant, endpoint="/v1/chat/completions", input_file_id="file-x",
                       completion_window="24h", status="validating", created_at=1, expires_at=10**10)


def test_active_batches_are_counted_with_the_item_and_refused_at_the_limit(store, table):
    store.put_new(_batch(1), active_limit=2)
    store.put_new(_batch(2), active_limit=2)
    with pytest.raises(QuotaExceeded) as refused:
        store.put_new(_batch(3), active_limit=2)
    assert (refused.value.limit, refused.value.current) == (2, 2)
    assert store.get("acme", _batch(3).id) is None, "a refused batch is not stored"
    store.put_new(_batch(4, tenant="other"), active_limit=2)   # counters are per tenant
    assert store.quota_count("acme", QUOTA_ACTIVE_SK) == 2

    assert status.transition(store, "acme", _batch(1).id, "failed")
    assert status.transition(store, "acme", _batch(1).id, "failed") is None   # already ended: no second give-back
    assert store.quota_count("acme", QUOTA_ACTIVE_SK) == 1
    store.put_new(_batch(3), active_limit=2)


def test_tokens_are_counted_once_per_batch_and_given_back_when_it_ends(store):
    for n in (1, 2, 3):
        store.put_new(_batch(n))
    store.reserve_tokens("acme", _batch(1).id, "m", 60, limit=100)
    store.reserve_tokens("acme", _batch(1).id, "m", 60, limit=100)   # a re-run of validation
    with pytest.raises(QuotaExceeded) as refused:
        store.reserve_tokens("acme", _batch(2).id, "m", 50, limit=100)
    assert (refused.value.limit, refused.value.current) == (100, 60)
    with pytest.raises(QuotaExceeded):
        store.reserve_tokens("acme", _batch(3).id, "m", 101, limit=100)   # alone over the limit
    store.reserve_tokens("acme", _batch(3).id, "other-model", 90, limit=100)
    assert store.quota_count("acme", quota_tokens_sk("m")) == 60

    assert status.transition(store, "acme", _batch(1).id, "in_progress")   # not an end: still held
    assert store.quota_count("acme", quota_tokens_sk("m")) == 60
    assert status.transition(store, "acme", _batch(1).id, "expired")
    assert store.quota_count("acme", quota_tokens_sk("m")) == 0
    assert store.get("acme", _batch(1).id).quota_released


def test_rival_terminal_transitions_give_back_once(store):
    store.put_new(_batch(1))
    store.reserve_tokens("acme", _batch(1).id, "m", 40, limit=None)
    status.transition(store, "acme", _batch(1).id, "cancelling")
    start = threading.Barrier(4)

    def end():
        start.wait()
        return status.transition(store, "acme", _batch(1).id, "cancelled")

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(end())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert store.quota_count("acme", QUOTA_ACTIVE_SK) == 0
    assert store.quota_count("acme", quota_tokens_sk("m")) == 0


def test_a_share_taken_between_read_and_write_is_given_back_too(store, monkeypatch):
    """Validation counts the tokens while a rival is ending the batch: the rival's transaction, made
    on the share it read, fails its condition and reads again, so nothing stays counted."""
    store.put_new(_batch(1))
    real_get = store.get
    calls = {"n": 0}

    def get(tenant, batch_id, consistent=False):
        record = real_get(tenant, batch_id, consistent)
        calls["n"] += 1
        if calls["n"] == 1:   # the rival has read the batch holding only its active place
            store.reserve_tokens("acme", _batch(1).id, "m", 30, limit=None)
        return record
    monkeypatch.setattr(store, "get", get)
    assert status.transition(store, "acme", _batch(1).id, "failed")
    assert store.quota_count("acme", quota_tokens_sk("m")) == 0
    assert store.quota_count("acme", QUOTA_ACTIVE_SK) == 0
