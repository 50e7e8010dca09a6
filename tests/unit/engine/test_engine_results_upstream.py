"""Result lines, usage extraction and the upstream client's retry policy (httpx MockTransport)."""
from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from batchgate.adapters import upstream
from batchgate.adapters.upstream import UpstreamClient, retry_after_seconds
from batchgate.contract import UpstreamSettings
from batchgate.domain.ports import UpstreamAnswer, UpstreamFailure
from batchgate.domain.results import not_run_line, response_line, usage_of


def test_usage_of_chat_responses_and_embeddings_bodies():
    chat = {"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                      "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 2}}}
    assert usage_of(chat).model_dump() == {"input_tokens": 10, "cached_tokens": 4, "output_tokens": 5,
                                           "reasoning_tokens": 2, "total_tokens": 15}
    responses = {"usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10,
                           "input_tokens_details": {"cached_tokens": 1},
                           "output_tokens_details": {"reasoning_tokens": 2}}}
    assert usage_of(responses).model_dump() == {"input_tokens": 7, "cached_tokens": 1, "output_tokens": 3,
                                                "reasoning_tokens": 2, "total_tokens": 10}
    embeddings = {"usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert usage_of(embeddings).model_dump()["input_tokens"] == 8
    assert usage_of({"usage": None}).total_tokens == 0 and usage_of("text").total_tokens == 0


def test_result_line_shapes():
    line = orjson.loads(response_line("a", 200, "req_1", {"x": 1}))
    assert line["id"].startswith("batch_req_") and len(line["id"]) == 42
    assert line == {"id": line["id"], "custom_id": "a", "error": None,
                    "response": {"status_code": 200, "request_id": "req_1", "body": {"x": 1}}}
    cancelled = orjson.loads(not_run_line("b", "cancelled"))
    assert cancelled["response"] is None and cancelled["error"]["code"] == "batch_cancelled"
    assert orjson.loads(not_run_line("b", "expired"))["error"]["code"] == "batch_expired"


def test_retry_after_headers():
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_seconds(httpx.Headers({"retry-after": "2"})) == 2
    assert retry_after_seconds(httpx.Headers({})) is None
    assert 0 <= retry_after_seconds(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0


def _client(handler, **settings) -> UpstreamClient:
    conf = UpstreamSettings(base_url="http://up.test/v1", max_attempts=settings.pop("max_attempts", 4),
                            **settings)
    client = UpstreamClient(conf, "sk-test", backoff_base=0.001, transport=httpx.MockTransport(handler))
    return client


def _run(client, **kw):
    async def go():
        async with client:
            return await client.post("/v1/chat/completions", b"{}", **kw)
    return asyncio.run(go())


def test_retries_retryable_statuses_then_returns_the_answer():
    seen = []

    def handler(request: httpx.Request):
        seen.append(request)
        if len(seen) < 3:
            return httpx.Response(429 if len(seen) == 1 else 503, headers={"retry-after-ms": "1"})
        return httpx.Response(200, json={"ok": True}, headers={"x-request-id": "req_abc"})

    answer = _run(_client(handler))
    assert answer == UpstreamAnswer(200, "req_abc", {"ok": True}, b'{"ok":true}')
    assert str(seen[0].url) == "http://up.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"


def test_does_not_retry_400_or_when_told_not_to():
    count = []

    def handler(request):
        count.append(1)
        return httpx.Response(400 if len(count) == 1 else 500, json={"error": {}},
                              headers={"x-should-retry": "false"} if len(count) > 1 else {})

    assert _run(_client(handler)).status_code == 400
    assert _run(_client(handler)).status_code == 500
    assert len(count) == 2


def test_gives_up_after_max_attempts_and_on_connection_errors():
    def failing(request):
        raise httpx.ConnectError("refused")

    answer = _run(_client(failing, max_attempts=2))
    assert isinstance(answer, UpstreamFailure) and answer.code == "upstream_error"

    def slow(request):
        raise httpx.ReadTimeout("slow")

    assert _run(_client(slow, max_attempts=2)).code == "request_timeout"


def test_a_retry_that_would_not_fit_the_time_budget_leaves_the_line_unanswered(monkeypatch):
    calls, naps = [], []

    def handler(request):
        calls.append(request)
        return httpx.Response(429, headers={"retry-after": "30"})

    async def nap(seconds):
        naps.append(seconds)

    monkeypatch.setattr(upstream.asyncio, "sleep", nap)
    assert _run(_client(handler), give_up_at=time.monotonic() + 5) is None
    assert (len(calls), naps) == (1, [])  # given up at once: no wait, no second attempt


def test_usage_from_the_upstream_is_untrusted():
    def usage(**u):
        return usage_of({"usage": u}).model_dump()
    assert usage(prompt_tokens=2**64 - 1, completion_tokens=-5, total_tokens="9")["input_tokens"] == 0
    assert usage(prompt_tokens=-1, completion_tokens=True)["output_tokens"] == 0
    assert usage(prompt_tokens=2**64 - 1, completion_tokens=3) == {
        "input_tokens": 0, "cached_tokens": 0, "output_tokens": 3, "reasoning_tokens": 0, "total_tokens": 3}
    assert usage(prompt_tokens=2**32 - 1)["input_tokens"] == 2**32 - 1


def test_a_batch_with_absurd_stored_counts_still_reads():
    """Counts are ADDed by workers, so any integer can be stored (a type other than a number cannot:
    the record refuses it at the store). Whatever integer is there, the Batch object still reads."""
    from batchgate.models.batches import MAX_COUNT, batch_object
    from batchgate.models.records import BatchRecord
    item = {"pk": "T#t", "sk": "BATCH#batch_1", "id": "batch_1", "tenant": "t", "expires_at": 2,
            "endpoint": "/v1/chat/completions", "input_file_id": "file-1",
            "completion_window": "24h", "status": "completed", "created_at": 1, "total": 2**70,
            "completed": -3, "failed": -2**70, "input_tokens": 2 * (2**64 - 1), "total_tokens": -1}
    obj = orjson.loads(orjson.dumps(batch_object(BatchRecord.from_item(item))))
    assert obj["request_counts"] == {"total": MAX_COUNT, "completed": 0, "failed": 0}
    assert obj["usage"]["input_tokens"] == MAX_COUNT and obj["usage"]["total_tokens"] == 0


def test_no_cookie_from_one_answer_reaches_another_request():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={"ok": True},
                              headers={"set-cookie": "session=tenant-a-secret; Path=/; Domain=up.test"})

    async def go():
        async with _client(handler) as client:
            for _ in range(3):
                await client.post("/v1/chat/completions", b"{}")
            return client._client.cookies
    jar = asyncio.run(go())
    assert seen == [None, None, None] and len(jar) == 0


def test_a_redirect_is_an_answer_not_followed():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})

    answer = _run(_client(handler))
    assert calls == ["http://up.test/v1/chat/completions"]
    assert isinstance(answer, UpstreamAnswer) and answer.status_code == 302
