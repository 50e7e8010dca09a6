"""The development upstream answers every batch endpoint like an OpenAI-compatible server would."""
from __future__ import annotations

import httpx
import pytest

from batchgate.domain.results import usage_of

BODIES = {
    "/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hello world"}]},
    "/completions": {"model": "m", "prompt": "hello"},
    "/embeddings": {"model": "e", "input": ["a", "b"], "dimensions": 4},
    "/responses": {"model": "m", "input": "hello"},
    "/moderations": {"input": "hello"},
    "/images/generations": {"model": "gpt-image-1", "prompt": "a cat"},
    "/images/edits": {"model": "gpt-image-1", "prompt": "a cat", "image": "x"},
    "/videos": {"model": "sora-2", "prompt": "a cat"},
}


@pytest.mark.parametrize("path", sorted(BODIES))
def test_every_endpoint_answers_with_a_request_id(dev_upstream, path):
    _, base_url = dev_upstream
    resp = httpx.post(base_url + path, json=BODIES[path])
    assert resp.status_code == 200 and resp.headers["x-request-id"].startswith("req_")
    body = resp.json()
    if path in ("/chat/completions", "/completions", "/embeddings", "/responses"):
        assert usage_of(body).input_tokens > 0
    if path == "/chat/completions":
        assert body["choices"][0]["message"]["content"].startswith("[batchgate dev upstream]")
        assert body["model"] == "m"
    if path == "/embeddings":
        assert [len(d["embedding"]) for d in body["data"]] == [4, 4]


def test_fault_markers(dev_upstream):
    _, base_url = dev_upstream
    url = base_url + "/chat/completions"
    once = {"model": "m", "messages": [{"role": "user", "content": "__fail_429_once__ unique-1"}]}
    first = httpx.post(url, json=once)
    assert first.status_code == 429 and first.headers["retry-after"] == "1"
    assert httpx.post(url, json=once).status_code == 200
    bad = httpx.post(url, json={"model": "m", "messages": [{"role": "user", "content": "__fail_400__"}]})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert httpx.post(base_url + "/nope", json={}).status_code == 404
