"""Hostile lines and a hostile upstream, end to end through local mode (issue 9 findings 1, 2, 4): every
batch ends, every line is accounted for once, nothing one answer carries reaches another request, and
the tenant's reads keep working whatever numbers the upstream sends."""
from __future__ import annotations

import io
import json

import pytest
from support.sdk import wait_for_batch

pytestmark = pytest.mark.e2e

DEEP = 600  # beyond orjson's encoder (254 levels), within what validation accepts (1,024)
BIG = 2**70


def _row(custom_id: str, marker: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "dev-model", "messages": [{"role": "user", "content": marker}], **body}}


def _run(client, rows: list[dict]):
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    f = client.files.create(file=("hostile.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_for_batch(client, batch.id, timeout=120)
    out = [json.loads(x) for x in client.files.content(batch.output_file_id).read().splitlines()] \
        if batch.output_file_id else []
    err = [json.loads(x) for x in client.files.content(batch.error_file_id).read().splitlines()] \
        if batch.error_file_id else []
    return batch, {r["custom_id"]: r for r in out}, {r["custom_id"]: r for r in err}, out + err


def test_hostile_lines_and_answers_end_with_every_line_once(client_a, upstream_server):
    deep = json.loads("[" * DEEP + "]" * DEEP)
    rows = [_row("deep", "__echo_raw__", metadata_tree=deep),
            _row("big", "__echo_raw__", seed=BIG),
            _row("cookie", "__set_cookie__ a"), _row("after-cookie", "plain b"),
            _row("huge-1", "__usage_huge__ x"), _row("huge-2", "__usage_huge__ y"),
            _row("negative", "__usage_negative__ z"),
            _row("redirect", "__redirect__"), _row("text", "__not_json__"),
            _row("deep-answer", "__deep_answer__"), _row("ok", "hello")]
    cookies_before = len(upstream_server.cookies)

    batch, out, err, every = _run(client_a, rows)

    assert batch.status == "completed", batch
    assert sorted(r["custom_id"] for r in every) == sorted(r["custom_id"] for r in rows)
    # Finding 2: the deep and the big line went upstream as written (the echo is the request body)
    assert out["deep"]["response"]["body"]["metadata_tree"] == deep
    assert out["big"]["response"]["body"]["seed"] == BIG
    # Finding 1: no cookie ever came back to the upstream
    assert upstream_server.cookies[cookies_before:] == []
    # Finding 4: absurd usage counts as nothing, and the tenant's reads still answer
    assert batch.usage is not None and batch.usage.input_tokens < 2**53
    assert client_a.batches.retrieve(batch.id).id == batch.id
    assert any(b.id == batch.id for b in client_a.batches.list(limit=100).data)
    # Answers that are not JSON, too deep to decode, or redirects are recorded as the upstream sent them
    assert err["redirect"]["response"]["status_code"] == 302
    assert out["text"]["response"]["body"].endswith("this is not JSON")
    assert out["deep-answer"]["response"]["body"].startswith("[[[")


def test_a_thousand_long_validation_errors_are_stored_and_readable(client_a):
    emoji = "\U0001F600" * 100
    batch, _, _, _ = _run(client_a, [_row(emoji, "dup") for _ in range(1002)])
    assert batch.status == "failed", batch
    assert batch.errors is not None and len(batch.errors.data) > 500
    assert {e.code for e in batch.errors.data} == {"duplicate_custom_id"}
