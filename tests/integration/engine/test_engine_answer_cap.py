"""An upstream answer over the upstream's `max_answer_bytes` through the engine handlers: its line ends in
the error file as `response_too_large`, asked once; every other line of the chunk is answered and the
batch completes (before the cap, a 10 MB answer per line in flight could run a worker out of memory,
and its chunk crashed again on each redelivery)."""
from __future__ import annotations

from engine_helpers import chat_lines

from batchgate.contract import UpstreamSettings

DEFAULT_CAP = UpstreamSettings.model_fields["max_answer_bytes"].default


def test_an_oversized_answer_fails_its_line_and_the_batch_completes(engine):
    # The engine's upstream sets no cap: the default applies. __huge_answer__ is a 10 MB JSON answer;
    # __echo_raw__ sends the request back, here ~100 KB: under the cap, so it is kept.
    under = "__echo_raw__ " + "u" * (100 * 1024)
    batch_id = engine.create_batch(chat_lines(5, extra={2: "__huge_answer__", 4: under}))
    calls = len(engine.upstream.calls)

    batch = engine.run_all(batch_id)

    assert batch.status == "completed"
    out = engine.file_lines(batch.output_file_id)
    err = engine.file_lines(batch.error_file_id)
    assert [o["custom_id"] for o in out] == ["req-0", "req-1", "req-3", "req-4"]
    assert [e["custom_id"] for e in err] == ["req-2"]
    assert err[0]["response"] is None
    assert err[0]["error"]["code"] == "response_too_large"
    assert f"{DEFAULT_CAP:,}-byte cap" in err[0]["error"]["message"]
    assert "upstream 'default'" in err[0]["error"]["message"]
    echoed = out[3]["response"]["body"]["messages"][0]["content"]
    assert len(echoed) > 100 * 1024 and out[3]["response"]["status_code"] == 200
    assert len(echoed) < DEFAULT_CAP
    assert (batch.completed, batch.failed) == (4, 1)
    assert len(engine.upstream.calls) - calls == 5   # the oversized answer was not asked for again
