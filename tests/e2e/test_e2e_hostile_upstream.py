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


def test_every_batch_ends_when_a_step_keeps_failing(client_a, monkeypatch):
    # Through the deployed state machine definition (run by local mode): Validate broken for one
    # batch, Finalize broken for another. After their retries (about a minute), each ends `failed`
    # with a readable reason, instead of staying validating / in_progress until it expires.
    from batchgate.handlers import wf_finalize, wf_validate
    broken_validate, broken_finalize = set(), set()
    real_validate, real_finalize = wf_validate.validate_batch, wf_finalize.finalize_batch

    def validate(tenant, batch_id, **kw):
        if batch_id in broken_validate:
            raise RuntimeError("simulated: Validate keeps crashing")
        return real_validate(tenant, batch_id, **kw)

    def finalize(tenant, batch_id, reason, *a, **kw):
        if batch_id in broken_finalize and reason != "abort":
            raise RuntimeError("simulated: Finalize keeps crashing")
        return real_finalize(tenant, batch_id, reason, *a, **kw)

    monkeypatch.setattr(wf_validate, "validate_batch", validate)
    monkeypatch.setattr(wf_finalize, "finalize_batch", finalize)
    data = b"".join(json.dumps(_row(f"r{i}", "hi")).encode() + b"\n" for i in range(3))
    f = client_a.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")
    # The ids are registered before either batch's workflow can reach the patched step: Validate
    # runs right away, so the first batch's id is known only once created; hold it meanwhile.
    import threading
    gate = threading.Event()

    def held_validate(tenant, batch_id, **kw):
        gate.wait(30)
        return validate(tenant, batch_id, **kw)
    monkeypatch.setattr(wf_validate, "validate_batch", held_validate)
    a = client_a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    b = client_a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    broken_validate.add(a.id)
    broken_finalize.add(b.id)
    gate.set()

    a = wait_for_batch(client_a, a.id, timeout=240)
    b = wait_for_batch(client_a, b.id, timeout=240)
    for batch in (a, b):
        assert batch.status == "failed", batch
        assert [e.code for e in batch.errors.data] == ["batch_failed"]
    assert "RuntimeError" in a.errors.data[0].message
    assert "could not be assembled" in b.errors.data[0].message
