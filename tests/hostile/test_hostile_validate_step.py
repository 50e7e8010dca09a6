"""The Validate step with hostile files end to end (S3 -> validator -> DynamoDB): whatever the file, the
batch ends `failed` with its errors stored, or `in_progress`; the step never crashes."""
from __future__ import annotations

import orjson
import pytest
from hostile_helpers import FakeContext, call_json, store_file

from batchgate.handlers import wf_validate

CHAT = "/v1/chat/completions"


def _line(custom_id: str, model: str) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT,
                         "body": {"model": model, "messages": []}})


def _validate(tenant: str, data: bytes) -> tuple[dict, dict]:
    file_id = store_file(tenant, data)
    created = call_json("POST", "/v1/batches", {"input_file_id": file_id, "endpoint": CHAT,
                                                "completion_window": "24h"}, tenant=tenant)
    assert created.status == 200, created
    batch_id = created.json()["id"]
    out = wf_validate.handler({"batch_id": batch_id, "tenant": tenant}, FakeContext())
    batch = call_json("GET", f"/v1/batches/{batch_id}", tenant=tenant).json()
    return out, batch


def test_small_hostile_file_fails_with_line_numbers(world):
    data = b"\xef\xbb\xbf" + _line("a", "m") + b"\r\n" + _line("a", "m") + b"\r\n"
    out, batch = _validate("tenant-v", data)
    assert out["outcome"] == "failed" and batch["status"] == "failed"
    assert [(e["code"], e["line"]) for e in batch["errors"]["data"]] == [("invalid_json_line", 1)]


@pytest.mark.parametrize("what", ["long model names", "long custom ids"])
def test_a_thousand_long_error_messages_still_fail_the_batch(world, what):
    # 1,000 errors whose messages quote what the line sent (model / custom_id, ~600 chars each): the
    # stored errors must still fit the batch item (DynamoDB caps an item at 400 KB).
    if what == "long model names":
        lines = [_line("first", "m")] + [_line(f"r{i}", "x" * 600 + str(i)) for i in range(1000)]
    else:
        lines = [_line("d" * 600, "m")] * 1001
    out, batch = _validate("tenant-v", b"\n".join(lines) + b"\n")
    assert out["outcome"] == "failed" and batch["status"] == "failed"
    assert len(batch["errors"]["data"]) >= 1
