"""The chunk worker's event loop: upstream connection pools that outlive one invocation, and AWS
calls that do not stall the lines in flight."""
from __future__ import annotations

import threading
import time

import orjson
from engine_helpers import chat_lines

from batchgate.adapters.batch_store import BatchStore
from batchgate.domain import worker
from batchgate.handlers import engine_deps
from batchgate.settings import get_settings, reset_settings
from batchgate.worker_loop import run_on_worker_loop

BODY = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})


async def _post_once():
    async with engine_deps.upstream_for("gpt-test") as client:
        answer = await client.post("/v1/chat/completions", BODY)
    return answer.status_code, client._client


def test_worker_loop_keeps_one_upstream_pool_per_thread_across_invocations(engine):
    # When two invocations run one after the other on the same thread
    first_status, first_pool = run_on_worker_loop(_post_once())
    second_status, second_pool = run_on_worker_loop(_post_once())

    # Then both are answered through the same pool (it still works on the second invocation)
    assert (first_status, second_status) == (200, 200)
    assert second_pool is first_pool and not first_pool.is_closed

    # And another thread gets a loop and a pool of its own
    other: list = []
    t = threading.Thread(target=lambda: other.append(run_on_worker_loop(_post_once())))
    t.start()
    t.join(30)
    assert other and other[0][0] == 200 and other[0][1] is not first_pool


def test_a_slow_status_read_does_not_stall_lines_in_flight(engine, monkeypatch):
    # Given one chunk of 5 lines sent one at a time, each taking 400 ms upstream, and batch reads
    # that block until a line is answered (or 2 s pass): a read on the event loop thread would
    # block every answer, so it could only ever time out
    base_url = get_settings().upstreams.for_model(None)[1].base_url
    upstreams = {"upstreams": {"default": {"base_url": base_url, "concurrency": 1, "max_attempts": 1,
                                           "timeout_seconds": 20}}}
    monkeypatch.setenv("BATCHGATE_UPSTREAMS", orjson.dumps(upstreams).decode())
    reset_settings()
    batch_id = engine.create_batch(chat_lines(5, extra={i: " __sleep_ms:400__" for i in range(5)}))
    assert engine.validate(batch_id)["outcome"] == "valid"
    engine.dispatch(batch_id)

    polls: list[bool] = []  # per batch read: was a line answered while it was under way?
    answers: list[float] = []
    get, one = BatchStore.get, worker._ChunkRun._one

    def slow_get(self, tenant, bid, consistent=False):
        seen, deadline = len(answers), time.monotonic() + 2.0
        while len(answers) == seen and time.monotonic() < deadline:
            time.sleep(0.01)
        polls.append(len(answers) > seen)
        return get(self, tenant, bid, consistent)

    async def timed_one(self, client, line):
        await one(self, client, line)
        answers.append(time.monotonic())

    monkeypatch.setattr(BatchStore, "get", slow_get)
    monkeypatch.setattr(worker._ChunkRun, "_one", timed_one)

    # When the worker runs the chunk
    engine.run_worker(engine.receive())

    # Then every line was answered, and some while a status read was under way
    assert len(answers) == 5
    assert any(polls), polls
    assert engine.batch(batch_id).completed == 5

