"""Per-tenant quotas through the official SDK (issue 10): active batches (create answers 429) and
enqueued tokens per model (the batch fails with OpenAI's `token_limit_exceeded`); capacity comes back
when a batch ends. Each test uses a tenant of its own, so other tests' batches count for nobody here."""
from __future__ import annotations

import io
import json
import os

import openai
import pytest
from support.sdk import wait_for_batch

from batchgate.domain.validation import estimate_tokens
from batchgate.settings import reset_settings
from batchgate_cli.main import create_key


@pytest.fixture
def quotas(monkeypatch):
    """Set BATCHGATE_QUOTAS for the in-process functions (they read it per cold start: reset)."""
    def configure(config: dict) -> None:
        monkeypatch.setenv("BATCHGATE_QUOTAS", json.dumps(config))
        reset_settings()
    yield configure
    monkeypatch.undo()
    reset_settings()


def _client(local_service, tenant: str) -> openai.OpenAI:
    key = create_key(os.environ["BATCHGATE_KEYS_TABLE"], tenant)
    return openai.OpenAI(base_url=local_service.base_url, api_key=key, max_retries=0, timeout=60)


def _lines(n: int, content: str = "hello", prefix: str = "q") -> bytes:
    return b"".join(json.dumps({
        "custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "dev-model", "messages": [{"role": "user", "content": f"{content} {i}"}]},
    }).encode() + b"\n" for i in range(n))


def _file(client, data: bytes) -> str:
    return client.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch").id


def _create(client, file_id: str):
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")


def test_a_tenant_at_its_active_batch_limit_gets_429_until_one_ends(local_service, quotas):
    quotas({"default": {"active_batches": 50}, "tenants": {"quota-active": {"active_batches": 1}}})
    client = _client(local_service, "quota-active")
    slow = _create(client, _file(client, _lines(2, "__sleep_ms:30000__", prefix="slow")))
    quick = _file(client, _lines(2))

    with pytest.raises(openai.RateLimitError) as refused:
        _create(client, quick)
    error = refused.value.body
    assert refused.value.status_code == 429 and error["code"] == "active_batch_limit_exceeded"
    assert "Limit: 1 active batches; currently active: 1" in error["message"]
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert [b.id for b in client.batches.list()] == [slow.id], "the refused create stored nothing"

    client.batches.cancel(slow.id)
    assert wait_for_batch(client, slow.id, {"cancelled"}).status == "cancelled"
    done = wait_for_batch(client, _create(client, quick).id)
    assert done.status == "completed", "the cancelled batch gave its place back"


def test_a_batch_over_the_enqueued_token_limit_fails_as_openai_s_does(local_service, quotas):
    first, second = _lines(3, "__sleep_ms:30000__", prefix="a"), _lines(3, prefix="b")
    tokens = sum(estimate_tokens(line) for line in first.splitlines())
    # Room for the first batch, not for both; other models are not limited.
    quotas({"tenants": {"quota-tokens": {"enqueued_tokens_by_model": {"dev-model": tokens + 5}}}})
    client = _client(local_service, "quota-tokens")
    holding = _create(client, _file(client, first))
    assert wait_for_batch(client, holding.id, {"in_progress"}).status == "in_progress"

    second_file = _file(client, second)
    refused = wait_for_batch(client, _create(client, second_file).id)
    assert refused.status == "failed"
    [error] = refused.errors.data
    assert (error.code, error.line, error.param) == ("token_limit_exceeded", None, None)
    assert error.message.startswith("Enqueued token limit reached for dev-model in organization quota-tokens. "
                                    f"Limit: {tokens + 5:,} enqueued tokens; currently enqueued: {tokens:,};")

    client.batches.cancel(holding.id)
    assert wait_for_batch(client, holding.id, {"cancelled"}).status == "cancelled"
    again = wait_for_batch(client, _create(client, second_file).id)
    assert again.status == "completed" and again.request_counts.completed == 3
