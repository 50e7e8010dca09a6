"""Batches API through the official openai SDK against local mode (the deployed state machine runs)."""
from __future__ import annotations

import io
import json

import openai
import pytest
from support.sdk import wait_for_batch

pytestmark = pytest.mark.e2e


def _input_file(client, data: bytes):
    return client.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")


def _create(client, file_id: str, **kw):
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                 completion_window="24h", **kw)


def test_create_and_retrieve(client_a, batch_lines):
    file = _input_file(client_a, batch_lines(2))

    batch = _create(client_a, file.id, metadata={"purpose": "e2e"})

    assert batch.id.startswith("batch_")
    assert batch.object == "batch"
    assert batch.input_file_id == file.id
    assert batch.endpoint == "/v1/chat/completions"
    assert batch.completion_window == "24h"
    assert batch.metadata == {"purpose": "e2e"}
    assert batch.status in {"validating", "in_progress", "finalizing", "completed"}
    assert client_a.batches.retrieve(batch.id).id == batch.id


def test_batch_runs_to_completion(client_a, batch_lines):
    data = batch_lines(7, prefix="run")
    file = _input_file(client_a, data)

    batch = wait_for_batch(client_a, _create(client_a, file.id).id)

    assert batch.status == "completed", batch
    assert batch.request_counts.total == 7
    assert batch.request_counts.completed == 7
    assert batch.request_counts.failed == 0
    assert batch.output_file_id
    lines = [json.loads(line) for line in client_a.files.content(batch.output_file_id).read().splitlines()]
    assert [line["custom_id"] for line in lines] == [f"run-{i}" for i in range(7)]
    assert all(line["response"]["status_code"] == 200 for line in lines)
    assert all(line["response"]["body"]["choices"] for line in lines)
    assert all(line["id"].startswith("batch_req_") for line in lines)
    output = client_a.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"


def test_invalid_lines_fail_the_batch_with_line_numbers(client_a, batch_lines):
    data = batch_lines(2) + b"{not json}\n"
    file = _input_file(client_a, data)

    batch = wait_for_batch(client_a, _create(client_a, file.id).id)

    assert batch.status == "failed", batch
    assert batch.errors and batch.errors.data
    assert any(e.line == 3 for e in batch.errors.data)


def test_unknown_input_file_is_404(client_a):
    with pytest.raises(openai.NotFoundError):
        _create(client_a, "file-doesnotexist0000000000")


def test_list_pages_newest_first_without_duplicates(client_b, batch_lines):
    file = _input_file(client_b, batch_lines(1, prefix="many"))
    created = [_create(client_b, file.id).id for _ in range(45)]

    listed = [b.id for b in client_b.batches.list(limit=10)]  # the SDK follows `after` page by page
    first = client_b.batches.list(limit=20)
    second = client_b.batches.list(limit=20, after=first.data[-1].id)

    assert len(listed) == len(set(listed))
    assert set(created) <= set(listed)
    stamps = [int(i[len("batch_"):len("batch_") + 8], 16) for i in listed]
    assert stamps == sorted(stamps, reverse=True)
    assert first.has_more and len(first.data) == 20
    assert not {b.id for b in first.data} & {b.id for b in second.data}
    assert [b.id for b in first.data] + [b.id for b in second.data] == listed[:40]


def test_another_tenant_cannot_see_or_cancel(client_a, client_b, batch_lines):
    file = _input_file(client_a, batch_lines(1))
    batch = _create(client_a, file.id)

    with pytest.raises(openai.NotFoundError):
        client_b.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        client_b.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        _create(client_b, file.id)
    assert batch.id not in {b.id for b in client_b.batches.list(limit=100)}


def test_cancel_is_idempotent_and_ends_cancelled(client_a, batch_lines):
    file = _input_file(client_a, batch_lines(3, prefix="cancel"))
    batch = _create(client_a, file.id)

    first = client_a.batches.cancel(batch.id)
    again = client_a.batches.cancel(batch.id)
    final = wait_for_batch(client_a, batch.id)

    assert first.status in {"cancelling", "cancelled", "completed"}
    assert again.status in {"cancelling", "cancelled", "completed"}
    if first.status != "completed":  # the batch may finish before the cancel lands
        assert final.status == "cancelled", final
        assert final.cancelled_at


def test_cancel_of_completed_batch_is_409(client_a, batch_lines):
    file = _input_file(client_a, batch_lines(1, prefix="done"))
    batch = wait_for_batch(client_a, _create(client_a, file.id).id)
    assert batch.status == "completed", batch

    with pytest.raises(openai.ConflictError) as err:
        client_a.batches.cancel(batch.id)

    assert err.value.status_code == 409
    assert err.value.response.headers.get("x-should-retry") == "false"
