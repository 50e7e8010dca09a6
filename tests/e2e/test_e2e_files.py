"""Files API through the official openai SDK against local mode."""
from __future__ import annotations

import io

import openai
import pytest

pytestmark = pytest.mark.e2e


def _upload(client, data: bytes, name: str = "input.jsonl", purpose: str = "batch"):
    return client.files.create(file=(name, io.BytesIO(data), "application/jsonl"), purpose=purpose)


def test_upload_retrieve_download_delete(client_a, batch_lines):
    data = batch_lines(3)

    created = _upload(client_a, data)

    assert created.id.startswith("file-")
    assert created.object == "file"
    assert created.bytes == len(data)
    assert created.filename == "input.jsonl"
    assert created.purpose == "batch"
    assert client_a.files.retrieve(created.id).id == created.id
    assert client_a.files.content(created.id).read() == data
    deleted = client_a.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client_a.files.retrieve(created.id)


def test_list_filters_orders_and_pages(client_a, batch_lines):
    ids = [_upload(client_a, batch_lines(1, prefix=f"list{i}")).id for i in range(4)]

    newest_first = [f.id for f in client_a.files.list(purpose="batch", limit=100)]
    oldest_first = [f.id for f in client_a.files.list(purpose="batch", order="asc", limit=100)]
    page = client_a.files.list(purpose="batch", limit=2, order="desc")
    after = client_a.files.list(purpose="batch", limit=2, order="desc", after=page.data[-1].id)

    assert [i for i in newest_first if i in ids] == ids[::-1]
    assert [i for i in oldest_first if i in ids] == ids
    assert len(page.data) == 2 and page.has_more
    assert [f.id for f in page.data] + [f.id for f in after.data] == newest_first[:4]
    assert not any(f.id in ids for f in client_a.files.list(purpose="assistants", limit=100))


def test_list_auto_pagination_sees_every_file_once(client_a, batch_lines):
    ids = {_upload(client_a, batch_lines(1, prefix=f"auto{i}")).id for i in range(5)}

    seen = [f.id for f in client_a.files.list(purpose="batch", limit=2)]

    assert ids <= set(seen)
    assert len(seen) == len(set(seen))


def test_another_tenant_gets_404(client_a, client_b, batch_lines):
    mine = _upload(client_a, batch_lines(1))

    with pytest.raises(openai.NotFoundError):
        client_b.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        client_b.files.content(mine.id)
    with pytest.raises(openai.NotFoundError):
        client_b.files.delete(mine.id)
    assert mine.id not in {f.id for f in client_b.files.list(limit=100)}
    assert client_a.files.retrieve(mine.id).id == mine.id


def test_bad_key_gets_401_with_openai_envelope(bad_client):
    with pytest.raises(openai.AuthenticationError) as err:
        bad_client.files.list()

    assert err.value.status_code == 401
    assert err.value.code == "invalid_api_key"
    assert err.value.body["type"] == "invalid_request_error"


def test_missing_key_gets_401(local_service):
    import httpx

    resp = httpx.get(f"{local_service.base_url}/files")

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert resp.headers["x-request-id"].startswith("req_")


def test_unknown_route_gets_404_envelope(local_service, client_a):
    import httpx

    resp = httpx.get(f"{local_service.base_url}/nothing-here", headers={"Authorization": f"Bearer {client_a.api_key}"})

    assert resp.status_code == 404
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.json()["error"]["message"] == "Invalid URL (GET /v1/nothing-here)"


def test_direct_upload_too_large_gets_413_naming_uploads(client_a, batch_lines):
    data = batch_lines(1) * (5 * 1024 * 1024 // len(batch_lines(1)) + 1)  # just over 5 MB

    with pytest.raises(openai.APIStatusError) as err:
        _upload(client_a, data)

    assert err.value.status_code == 413
    assert "upload" in err.value.message.lower()


def test_over_api_gateway_limit_gets_413(client_a, batch_lines):
    data = batch_lines(1) * (11 * 1024 * 1024 // len(batch_lines(1)))  # ~11 MB: refused at the door

    with pytest.raises(openai.APIStatusError) as err:
        _upload(client_a, data)

    assert err.value.status_code == 413
    assert "uploads" in err.value.message.lower()


def test_responses_carry_request_id(client_a):
    raw = client_a.files.with_raw_response.list()

    assert raw.headers["x-request-id"].startswith("req_")


# Issue 8, defect 3: API Gateway decodes a base64 answer only when the request's FIRST Accept value is
# a binary media type. OpenAI's curl example (curl sends `*/*`), requests, browsers, no Accept at all
# and the SDK (`application/binary`) must all get the file's bytes, not its base64.
@pytest.mark.parametrize("accept", ["*/*", "application/binary", "text/html,application/xhtml+xml,*/*;q=0.8",
                                    "application/json"])
def test_file_content_is_the_exact_bytes_whatever_the_client_accepts(local_service, client_a, accept):
    import httpx

    data = b'{"custom_id": "r1", "note": "caf\xc3\xa9 \xe2\x82\xac"}\n' + bytes(range(256))
    file = _upload(client_a, data, name="bytes.bin", purpose="user_data")

    resp = httpx.get(f"{local_service.base_url}/files/{file.id}/content",
                     headers={"Authorization": f"Bearer {client_a.api_key}", "Accept": accept})

    assert resp.status_code == 200
    assert resp.content == data
