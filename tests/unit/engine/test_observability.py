"""Issue 13 (6): a function that lacks a resource name fails loudly, before any work, naming the
variable; the event publisher never turns an unset bus into silently dropped events."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from batchgate.adapters.events import EventPublisher
from batchgate.contract import Env
from batchgate.observability import MissingSetting, lambda_handler

CONTEXT = SimpleNamespace(function_name="f", memory_limit_in_mb=128, invoked_function_arn="arn:aws:lambda:x",
                          aws_request_id="r", get_remaining_time_in_millis=lambda: 1000)


def test_a_handler_without_a_resource_name_fails_before_any_work(monkeypatch):
    ran = []

    @lambda_handler(requires=(Env.TABLE, Env.EVENT_BUS))
    def handler(event, context):
        ran.append(event)
        return "done"

    monkeypatch.setenv(Env.TABLE, "state")
    monkeypatch.setenv(Env.EVENT_BUS, "")
    with pytest.raises(MissingSetting, match="BATCHGATE_EVENT_BUS not set"):
        handler({}, CONTEXT)
    assert ran == []
    monkeypatch.setenv(Env.EVENT_BUS, "bus")
    assert handler({}, CONTEXT) == "done" and ran == [{}]


def test_every_handler_declares_what_it_needs():
    from batchgate.handlers import (
        api_batches,
        api_files,
        api_uploads,
        authorizer,
        chunk_worker,
        wf_dispatch,
        wf_finalize,
        wf_validate,
    )
    for module in (api_batches, api_files, api_uploads, authorizer, chunk_worker, wf_dispatch, wf_finalize,
                   wf_validate):
        # worn by every handler (log context, trace, metrics), naming at least the table it works on
        assert {Env.TABLE, Env.KEYS_TABLE} & set(module.handler.requires), module.__name__


def test_an_empty_bus_name_is_refused_not_dropped():
    with pytest.raises(ValueError, match="BATCHGATE_EVENT_BUS"):
        EventPublisher("")
    EventPublisher(None).batch_status("t", "batch_1", "completed")  # explicitly none: nothing to publish
