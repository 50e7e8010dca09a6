"""The global cap of an upstream across workers (adapters/upstream_cap.py): chunk runs on different
workers share `global_concurrency` slots leased in blocks from the state table, release them when they
end, and a crashed run's blocks come back when their lease runs out."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import orjson
import pytest
from engine_helpers import chat_lines

from batchgate.adapters import upstream_cap
from batchgate.adapters.chunk_queue import ChunkQueue
from batchgate.adapters.chunk_store import ChunkStore
from batchgate.adapters.upstream_cap import UpstreamCap, cap_pk
from batchgate.settings import get_settings, reset_settings
from batchgate.worker_loop import run_on_worker_loop

ANSWER = orjson.dumps({"id": "chatcmpl-cap", "object": "chat.completion", "model": "gpt-test",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


class CountingUpstream(ThreadingHTTPServer):
    """Counts requests in flight; holds each one until `hold_until` are in flight at once (then answers
    everything at once), so runs that could overlap do, whatever the machine's load."""
    daemon_threads = True

    def __init__(self, hold_until: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hold_until, self.in_flight, self.max_in_flight, self.requests = hold_until, 0, 0, 0
        self.by_chunk: dict[int, int] = {}       # requests in flight per chunk (5 lines a chunk)
        self.max_by_chunk: dict[int, int] = {}
        self.lock, self.full = threading.Lock(), threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingUpstream

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        chunk = int(body["messages"][0]["content"].split()[3].rstrip(".")) // 5   # "Say hello number <i>."
        srv = self.server
        with srv.lock:
            srv.by_chunk[chunk] = srv.by_chunk.get(chunk, 0) + 1
            srv.max_by_chunk[chunk] = max(srv.max_by_chunk.get(chunk, 0), srv.by_chunk[chunk])
            srv.in_flight += 1
            srv.requests += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            if srv.in_flight >= srv.hold_until:
                srv.full.set()
        srv.full.wait(30)  # a safety net only: the test fails below if it was never full
        with srv.lock:
            srv.in_flight -= 1  # before the answer: the client's next request on this lane follows it
            srv.by_chunk[chunk] -= 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)


@pytest.fixture
def counting_upstream():
    server = CountingUpstream(hold_until=4)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.full.set()
    server.shutdown()
    server.server_close()


def _configure(monkeypatch, base_url: str, **settings) -> None:
    upstreams = {"upstreams": {"default": {"base_url": base_url, "max_attempts": 1, "timeout_seconds": 40,
                                           "connect_timeout_seconds": 2, **settings}}}
    monkeypatch.setenv("BATCHGATE_UPSTREAMS", orjson.dumps(upstreams).decode())
    reset_settings()


def _blocks() -> list[dict]:
    table = boto3.resource("dynamodb").Table("state")
    return table.query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": cap_pk("default")},
                       ConsistentRead=True)["Items"]


def test_two_concurrent_chunk_runs_never_exceed_the_global_cap(engine, monkeypatch, counting_upstream):
    # Given an upstream capped at 4 requests across workers, in blocks of 2, and workers that would
    # each keep 3 in flight (6 together without the cap)
    _configure(monkeypatch, counting_upstream.base_url, concurrency=3, global_concurrency=4, global_block_size=2)
    batch_id = engine.create_batch(chat_lines(10))  # two chunks of 5 lines
    assert engine.validate(batch_id)["outcome"] == "valid"
    engine.dispatch(batch_id)
    messages = engine.receive(max_messages=2)
    assert len(messages) == 2

    # When two workers run one chunk each at the same time (the upstream holds every request until
    # 4 are in flight at once, so the runs overlap)
    workers = [threading.Thread(target=engine.run_worker, args=([m],)) for m in messages]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)

    # Then the two runs together kept exactly the cap in flight: one block (2 slots) each, never a
    # fifth request (without the cap each run would send 3 at once)
    assert counting_upstream.full.is_set()
    assert counting_upstream.max_in_flight == 4
    assert counting_upstream.max_by_chunk == {0: 2, 1: 2}
    assert engine.batch(batch_id).completed == 10
    # And each run gave its block back when it ended
    blocks = _blocks()
    assert len(blocks) == 2 and all("lease_owner" not in b for b in blocks)


def test_a_crashed_runs_blocks_come_back_when_their_lease_runs_out(engine, monkeypatch):
    # Given an upstream capped at 2 requests (one block), runs that do not wait for a block, and a
    # run that leased the block and crashed (it never renews or releases it)
    _configure(monkeypatch, get_settings().upstreams.for_model(None)[1].base_url, concurrency=2,
               global_concurrency=2, global_wait_seconds=0)
    crashed = run_on_worker_loop(UpstreamCap("state", get_settings().upstreams).lease(
        "default", 2, max_wait_seconds=0))
    assert crashed is not None and crashed.slots == 2
    sent: list[float] = []
    send = ChunkQueue.send

    def send_now(self, message, delay_seconds: float = 0) -> None:  # record the delay, deliver at once
        sent.append(delay_seconds)
        send(self, message, 0)

    monkeypatch.setattr(ChunkQueue, "send", send_now)
    batch_id = engine.create_batch(chat_lines(5))
    assert engine.validate(batch_id)["outcome"] == "valid"
    engine.dispatch(batch_id)

    # When a worker takes the chunk while the block is held
    engine.run_worker(engine.receive())

    # Then it sends nothing upstream and hands the chunk back for later, lease released
    assert engine.batch(batch_id).completed == 0
    assert sent and sent[-1] >= upstream_cap.RETRY_SECONDS[0]
    assert ChunkStore("state").get(batch_id, 0).lease_owner is None

    # When the crashed run's lease has run out
    later = upstream_cap._now() + upstream_cap.LEASE_SECONDS + 2
    monkeypatch.setattr(upstream_cap, "_now", lambda: later)

    # Then the handed-back chunk gets the block and runs to the end
    engine.run_worker(engine.receive())
    assert engine.batch(batch_id).completed == 5
    # And the crashed run, were it alive, would find its block gone
    assert crashed.renew() is False


def test_a_lease_is_renewed_before_it_runs_out(engine, monkeypatch):
    _configure(monkeypatch, "http://127.0.0.1:9/v1", concurrency=4, global_concurrency=8)
    cap = UpstreamCap("state", get_settings().upstreams)
    first = run_on_worker_loop(cap.lease("default", 4, max_wait_seconds=0))
    second = run_on_worker_loop(cap.lease("default", 4, max_wait_seconds=0))
    third = run_on_worker_loop(cap.lease("default", 4, max_wait_seconds=0))
    assert (first.slots, second.slots, third.slots) == (4, 4, 0)
    assert not first.renew_due()

    # When a third of the lease has passed, renewal is due and keeps the blocks past the first expiry
    start = upstream_cap._now()
    monkeypatch.setattr(upstream_cap, "_now", lambda: start + upstream_cap.RENEW_SECONDS + 1)
    assert first.renew_due() and first.renew()
    monkeypatch.setattr(upstream_cap, "_now", lambda: start + upstream_cap.LEASE_SECONDS + 2)
    again = run_on_worker_loop(cap.lease("default", 4, max_wait_seconds=0))
    assert again.slots == 4           # the unrenewed second block came back
    assert second.renew() is False    # and its old holder knows it lost it
    assert run_on_worker_loop(cap.lease("default", 4, max_wait_seconds=0)).slots == 0

    # And a released block is free at once
    first.release()
    assert run_on_worker_loop(cap.lease("default", 4, max_wait_seconds=0)).slots == 4


def test_block_sizes():
    from batchgate.contract import UpstreamSettings
    sizes = upstream_cap.block_sizes
    assert sizes(UpstreamSettings(base_url="x", concurrency=32)) == []
    assert sizes(UpstreamSettings(base_url="x", concurrency=32, global_concurrency=100)) == [32, 32, 32, 4]
    assert sizes(UpstreamSettings(base_url="x", concurrency=32, global_concurrency=10)) == [10]
    assert sizes(UpstreamSettings(base_url="x", concurrency=1, global_concurrency=1000)) == [16] * 62 + [8]
