"""The official openai SDK parses every answer with `_strict_response_validation=True` (its pydantic
types validate instead of constructing blindly), and no answer carries a key the SDK does not know
(which would mean an internal field leaked)."""
from __future__ import annotations

import io

import openai
import pytest
from openai import BaseModel as SdkModel
from openai.types import Batch, FileDeleted, FileObject, Upload
from openai.types.uploads import UploadPart
from support.sdk import wait_for_batch

from .conftest import LARGE_FILE_BYTES, chat_lines, make_client

pytestmark = pytest.mark.e2e


def assert_known_keys(obj, path: str = "$") -> None:
    """Every key of the answer is a field of the SDK type, all the way down."""
    if isinstance(obj, SdkModel):
        assert not obj.model_extra, f"{path}: keys the SDK does not know: {sorted(obj.model_extra)}"
        for name in type(obj).model_fields:
            assert_known_keys(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            assert_known_keys(item, f"{path}[{i}]")


def test_an_unknown_key_is_reported():
    leaked = FileObject.model_validate({"id": "file-x", "object": "file", "bytes": 1, "created_at": 1,
                                        "filename": "a", "purpose": "batch", "status": "processed",
                                        "s3_key": "files/t/file-x"})
    with pytest.raises(AssertionError, match="s3_key"):
        assert_known_keys(leaked)


def test_the_client_validates_strictly(local_service):
    """Guards the premise: a strict client refuses a shape its types do not allow."""
    strict = make_client(local_service)
    assert strict._strict_response_validation is True
    with pytest.raises(openai.APIResponseValidationError):
        strict.get("/openapi.json", cast_to=FileObject)


def test_files(client, seeded):
    created = client.files.create(file=("x.jsonl", io.BytesIO(chat_lines(2)), "application/jsonl"),
                                  purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600})
    assert isinstance(created, FileObject) and created.purpose == "batch"
    assert created.expires_at == created.created_at + 3600
    raw_bytes = client.files.create(file=chat_lines(1), purpose="batch")  # the SDK names raw bytes "upload"

    retrieved = client.files.retrieve(created.id)
    page = client.files.list(purpose="batch", limit=2, order="asc")
    batch_files = list(client.files.list(purpose="batch"))  # pages through all of them
    user_files = client.files.list(purpose="user_data").data
    content = client.files.content(created.id).read()
    deleted = client.files.delete(created.id)

    assert retrieved.id == created.id and retrieved.bytes == len(chat_lines(2))
    assert page.data and all(isinstance(f, FileObject) for f in page.data)
    assert {seeded.input_file, raw_bytes.id} <= {f.id for f in batch_files}
    assert seeded.other_file in {f.id for f in user_files}
    assert content == chat_lines(2)
    assert isinstance(deleted, FileDeleted) and deleted.deleted is True
    for obj in (created, raw_bytes, retrieved, *page.data, *batch_files, *user_files, deleted):
        assert_known_keys(obj)


def test_an_evals_file_trips_only_the_sdks_own_strict_types(client, local_service):
    """Known SDK gap, not ours: `files.create` accepts purpose `evals` (FilePurpose) but FileObject's
    `purpose` Literal lacks it, so a strict client refuses the File object OpenAI itself returns for
    such a file. Batchgate answers `evals` as stored (documented in openapi.json); a default client
    reads it. If this starts failing, the SDK fixed its types: fold evals back into test_files."""
    non_strict = make_client(local_service, strict=False)

    with pytest.raises(openai.APIResponseValidationError):
        client.files.create(file=("e.jsonl", io.BytesIO(b"{}\n"), "application/jsonl"), purpose="evals")
    evals = [f for f in non_strict.files.list(purpose="evals")]

    assert evals and all(f.purpose == "evals" for f in evals)


def test_an_empty_file_page_parses(local_service):
    """An empty page: first_id/last_id are null, which the SDK accepts."""
    page = make_client(local_service).files.list(purpose="no-such-purpose")
    assert page.data == [] and page.has_more is False


def test_large_file_content_follows_the_redirect(client, seeded):
    large = client.files.retrieve(seeded.large_file)
    content = client.files.content(seeded.large_file)

    data = content.read()

    assert large.bytes == LARGE_FILE_BYTES
    assert len(data) == LARGE_FILE_BYTES and data.startswith(chat_lines(1))
    assert [r.status_code for r in content.response.history] == [302]


def test_uploads(client):
    data = chat_lines(3)
    upload = client.uploads.create(bytes=len(data), filename="u.jsonl", mime_type="application/jsonl",
                                   purpose="batch")
    first = client.uploads.parts.create(upload.id, data=data[:10])
    second = client.uploads.parts.create(upload.id, data=data[10:])
    completed = client.uploads.complete(upload.id, part_ids=[first.id, second.id])
    other = client.uploads.create(bytes=1, filename="v.jsonl", mime_type="application/jsonl", purpose="batch")
    cancelled = client.uploads.cancel(other.id)

    assert isinstance(upload, Upload) and upload.status == "pending" and upload.file is None
    assert isinstance(first, UploadPart) and first.upload_id == upload.id
    assert completed.status == "completed" and isinstance(completed.file, FileObject)
    assert client.files.content(completed.file.id).read() == data
    assert cancelled.status == "cancelled" and cancelled.file is None
    for obj in (upload, first, second, completed, other, cancelled):
        assert_known_keys(obj)


def test_batch_create_retrieve_list_cancel(client, seeded):
    # Slow lines: the batch is still running when it is cancelled.
    slow = client.files.create(file=("slow.jsonl", io.BytesIO(chat_lines(4, content="__sleep_ms:2000__")),
                                     "application/jsonl"), purpose="batch")
    created = client.batches.create(input_file_id=slow.id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"k": "v"},
                                    output_expires_after={"anchor": "created_at", "seconds": 3600})
    cancelled = client.batches.cancel(created.id)
    listed = list(client.batches.list(limit=2))  # pages through every batch, two at a time
    finished = wait_for_batch(client, created.id, timeout=90)

    assert isinstance(created, Batch) and created.metadata == {"k": "v"}
    assert cancelled.status in {"cancelling", "cancelled"}
    assert {created.id, *seeded.batch_ids()} <= {b.id for b in listed}
    assert finished.status == "cancelled"
    for obj in (created, cancelled, finished, *listed):
        assert_known_keys(obj)


def test_completed_batch_with_usage(client, seeded):
    batch = client.batches.retrieve(seeded.completed_batch)

    assert batch.status == "completed", batch
    assert batch.request_counts.total == batch.request_counts.completed == 3
    assert batch.usage is not None and batch.usage.total_tokens > 0
    assert batch.usage.input_tokens_details.cached_tokens >= 0
    assert batch.output_file_id and batch.errors is None and batch.completed_at
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert_known_keys(batch)
    assert_known_keys(output)


def test_failed_batch_with_errors(client, seeded):
    batch = client.batches.retrieve(seeded.failed_batch)

    assert batch.status == "failed", batch
    assert batch.errors is not None and batch.errors.object == "list"
    assert any(e.line == 3 and e.code == "invalid_json_line" for e in batch.errors.data)
    assert batch.failed_at and batch.in_progress_at is None and batch.output_file_id is None
    assert_known_keys(batch)


def test_cancelled_batch(client, seeded):
    batch = client.batches.retrieve(seeded.cancelled_batch)

    assert batch.status == "cancelled", batch
    assert batch.cancelling_at and batch.cancelled_at
    assert_known_keys(batch)


@pytest.mark.parametrize("call, error", [
    (lambda c, s: c.batches.retrieve("batch_" + "0" * 32), openai.NotFoundError),
    (lambda c, s: c.files.retrieve("file-nope"), openai.NotFoundError),
    (lambda c, s: c.batches.cancel(s.completed_batch), openai.ConflictError),
    (lambda c, s: c.batches.list(limit=101), openai.BadRequestError),
    (lambda c, s: c.uploads.parts.create(s.cancelled_upload, data=b"x"), openai.BadRequestError),
], ids=["404-batch", "404-file", "409-cancel", "400-limit", "400-upload-state"])
def test_errors_carry_the_openai_envelope(client, seeded, call, error):
    with pytest.raises(error) as info:
        call(client, seeded)

    body = info.value.body
    assert set(body) == {"message", "type", "param", "code"}, body  # the SDK unwraps {"error": ...}
    assert info.value.request_id and info.value.request_id.startswith("req_")


def test_a_bad_key_is_authentication_error(local_service):
    bad = openai.OpenAI(base_url=local_service.base_url, api_key="sk-wrong", max_retries=0,
                        _strict_response_validation=True)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.batches.list()
    assert info.value.body["code"] == "invalid_api_key"
