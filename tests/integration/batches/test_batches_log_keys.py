"""Issue 11: every log line of an API request carries the caller's `tenant`, and `batch_id` on
/v1/batches/{id}; nothing of one request's keys reaches the next."""
from __future__ import annotations

import pytest
from batches_helpers import call
from support.logs import json_logs

from batchgate.handlers import api_batches

BATCH_ID = "batch_" + "b" * 32


class BrokenStore:
    def get(self, *args, **kwargs):
        raise RuntimeError("the table is gone")


@pytest.fixture
def logs():
    """The JSON log lines as the functions write them (Powertools' formatter), read as a whole."""
    with json_logs() as read:
        yield read


def test_an_api_error_line_names_the_tenant_and_the_batch(aws_env, monkeypatch, logs):
    monkeypatch.setattr(api_batches, "_store", lambda: BrokenStore())
    answer = call("GET", f"/v1/batches/{BATCH_ID}", tenant="acme")
    assert answer.status == 500
    (line,) = [entry for entry in logs() if entry["message"] == "unhandled error"]
    assert (line["tenant"], line["batch_id"]) == ("acme", BATCH_ID)

    # the next request (another tenant, no batch id in its path) carries its own keys only
    monkeypatch.setattr(api_batches.domain, "list_batches", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
    assert call("GET", "/v1/batches", tenant="other").status == 500
    (line,) = [entry for entry in logs() if entry["message"] == "unhandled error"]
    assert line["tenant"] == "other" and "batch_id" not in line
