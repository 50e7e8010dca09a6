"""The official openai SDK against the batches handler (httpx transport, no network)."""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import openai
import pytest
from batches_helpers import FakeContext, make_event

from batchgate.handlers.api_batches import handler


@pytest.fixture
def client(aws_env):
    calls: list[str] = []

    def route(request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        query = dict(httpx.QueryParams(url.query))
        calls.append(f"{request.method} {url.path}")
        answer = handler(make_event(request.method, url.path, body=request.content.decode() or None,
                                    query=query or None, headers=dict(request.headers)), FakeContext())
        headers = [(k, v) for k, vs in (answer.get("multiValueHeaders") or {}).items() for v in vs]
        headers += list((answer.get("headers") or {}).items())
        return httpx.Response(answer["statusCode"], headers=headers, content=answer["body"].encode())

    sdk = openai.OpenAI(api_key="unused", base_url="http://batchgate.test/v1",
                        http_client=httpx.Client(transport=httpx.MockTransport(route)))
    sdk.calls = calls
    return sdk


def test_the_sdk_creates_lists_retrieves_and_cancels(client, input_file):
    batch = client.batches.create(input_file_id=input_file(), endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"k": "v"})
    assert batch.status == "validating" and batch.metadata == {"k": "v"}
    assert client.batches.retrieve(batch.id).id == batch.id
    assert [b.id for b in client.batches.list(limit=1)] == [batch.id]
    assert client.batches.cancel(batch.id).status == "cancelling"


def test_the_sdk_pages_through_every_batch(client, input_file):
    file_id = input_file()
    made = {client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                  completion_window="24h").id for _ in range(7)}
    assert {b.id for b in client.batches.list(limit=3)} == made


def test_the_sdk_raises_typed_errors_and_does_not_retry_a_409(client, input_file, table):
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_" + "0" * 32)
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=input_file(), endpoint="/v1/nope", completion_window="24h")
    assert caught.value.param == "endpoint" and caught.value.code == "invalid_value"

    batch = client.batches.create(input_file_id=input_file(), endpoint="/v1/embeddings", completion_window="24h")
    table.update_item(Key={"pk": "T#acme", "sk": f"BATCH#{batch.id}"}, UpdateExpression="SET #s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "completed"})
    client.calls.clear()
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
    assert client.calls == [f"POST /v1/batches/{batch.id}/cancel"]
