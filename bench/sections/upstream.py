"""7. A rate-limited upstream shared by several workers: the upstreams' global cap
(adapters/upstream_cap.py) against an upstream that serves N requests at once (latency L) and answers
429 above N. Workers are threads, each with its own event loop (as Lambdas are separate processes),
running the real chunk path (domain/worker.py process_chunk, adapters/upstream.py UpstreamClient with
its per-worker AIMD limit) with S3/DynamoDB on a moto server; the chunk queue is in process (delays
honoured). The same run without the global cap is the contrast.

`python -m bench.sections.upstream LIMIT LATENCY` runs the upstream alone (it prints its port)."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import subprocess
import sys
import threading
import time
import urllib.request

import orjson

from bench.data import chat_line
from bench.engine_setup import TABLE, TENANT, RecordingWorkflow, new_batch, stores
from bench.moto_server import MotoServer, create_engine_resources
from bench.report import SectionResult, at_least, at_most, info

LIMIT = 64            # N: requests the upstream serves at once
LATENCY = 1.0         # L: seconds per request (a model answers in seconds)
PER_WORKER = 16       # UpstreamSettings.concurrency: lanes per chunk run
WORKERS = 6           # 96 lanes in all: 1.5x what the upstream serves
LINES_PER_CHUNK = 320  # 20 rounds of 16 lanes: ~20 s per chunk run at the limit

# -- the upstream ----------------------------------------------------------------------------------
_OK = orjson.dumps({
    "id": "chatcmpl-limited", "object": "chat.completion", "created": 1760000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}})
_THROTTLED = orjson.dumps({"error": {"message": "Rate limit reached: too many requests in flight.",
                                     "type": "requests", "param": None, "code": "rate_limit_exceeded"}})


def _response(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _serve(limit: int, latency: float) -> None:
    stats = {"ok": 0, "throttled": 0, "max_in_flight": 0}
    in_flight = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *headers = head.split(b"\r\n")
                length = 0
                for h in headers:
                    name, _, value = h.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                method, path = request_line.split()[:2]
                if method == b"GET":          # /stats
                    writer.write(_response(b"200 OK", orjson.dumps(stats)))
                elif path.endswith(b"/reset"):
                    stats.update(ok=0, throttled=0, max_in_flight=0)
                    writer.write(_response(b"200 OK", b"{}"))
                elif in_flight >= limit:
                    stats["throttled"] += 1
                    writer.write(_response(b"429 Too Many Requests", _THROTTLED))
                else:
                    in_flight += 1
                    stats["max_in_flight"] = max(stats["max_in_flight"], in_flight)
                    try:
                        await asyncio.sleep(latency)
                    finally:
                        in_flight -= 1
                    stats["ok"] += 1
                    writer.write(_response(b"200 OK", _OK))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class LimitedUpstream:
    """Context manager: the upstream in its own process (its CPU is not the workers'); `base_url` ends in /v1."""

    def __init__(self, limit: int, latency: float):
        self.limit, self.latency = limit, latency

    def __enter__(self) -> LimitedUpstream:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sections.upstream", str(self.limit),
                                      str(self.latency)], stdout=subprocess.PIPE, text=True, cwd=root)
        port = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not port:
            self.proc.kill()
            raise RuntimeError("limited upstream did not start")
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def stats(self) -> dict:
        return orjson.loads(urllib.request.urlopen(self.base_url + "/stats", timeout=10).read())

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.base_url + "/reset", data=b"", method="POST"),
                               timeout=10).read()

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the queue and the workers ---------------------------------------------------------------------
class DelayQueue:
    """The chunk queue in process: `send` with a delay as SQS does; `take` blocks for a ready message.
    Notes when the queue first runs dry (every chunk taken at least once): until then every worker had
    work, so the upstream's slots were all wanted."""

    def __init__(self, messages: list, n_chunks: int, on_dry):
        self._heap = [(0.0, i, m) for i, m in enumerate(messages)]
        self._seq = itertools.count(len(messages))
        self._cond = threading.Condition()
        self.remaining, self.finished, self.on_dry, self.dry_at = n_chunks, False, on_dry, None

    def send(self, message, delay_seconds: float = 0) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_seconds, next(self._seq), message))
            self._cond.notify()

    def chunk_done(self) -> None:
        with self._cond:
            self.remaining -= 1
            if self.remaining <= 0:
                self.finished = True
                self._cond.notify_all()

    def take(self):
        first_dry = False
        with self._cond:
            while not self.finished:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    return heapq.heappop(self._heap)[2]
                if not self._heap and self.dry_at is None:
                    self.dry_at, first_dry = now, True
                    break
                self._cond.wait(min(0.5, self._heap[0][0] - now) if self._heap else 0.5)
            else:
                return None
        if first_dry:
            self.on_dry()
        return self.take()


def _worker(queue: DelayQueue, ports, outcomes: list) -> None:
    from batchgate.domain.worker import WorkerLimits, process_chunk
    from batchgate.worker_loop import run_on_worker_loop
    deadline = time.monotonic() + 900
    while (msg := queue.take()) is not None:
        outcome = run_on_worker_loop(process_chunk(msg, ports, WorkerLimits(), lambda: deadline - time.monotonic()))
        outcomes.append(outcome)
        if outcome == "done":
            queue.chunk_done()


def _run(upstream: LimitedUpstream, lines: int, capped: bool) -> dict:
    """Every chunk of a `lines`-line batch through WORKERS workers; the upstream's figures."""
    from batchgate.adapters.upstream import UpstreamClient
    from batchgate.adapters.upstream_cap import UpstreamCap
    from batchgate.contract import UpstreamConfig, UpstreamSettings
    from batchgate.domain.ports import WorkerPorts
    from batchgate.models.engine import ChunkMessage

    settings = UpstreamSettings(base_url=upstream.base_url, concurrency=PER_WORKER, max_attempts=10,
                                timeout_seconds=30, connect_timeout_seconds=5,
                                global_concurrency=LIMIT if capped else None)
    data = b"".join(chat_line(i, 200) + b"\n" for i in range(lines))
    batch_id, specs = new_batch(data, LINES_PER_CHUNK)
    window: dict = {}

    def on_dry() -> None:
        window.update(upstream.stats(), seconds=time.monotonic() - t0)

    queue = DelayQueue([ChunkMessage(tenant=TENANT, batch_id=batch_id, chunk=s.n) for s in specs], len(specs),
                       on_dry)
    batches, chunks, segments, files = stores()
    ports = WorkerPorts(batches=batches, chunks=chunks, segments=segments, files=files,
                        workflow=RecordingWorkflow(), queue=queue,  # type: ignore[arg-type]
                        upstream=lambda model: UpstreamClient(settings, None, name="default"),
                        cap=UpstreamCap(TABLE, UpstreamConfig(upstreams={"default": settings})))
    outcomes: list[str] = []
    import batchgate.domain.worker  # noqa: F401  imported and clients built before the clock starts
    chunks.get(batch_id, 0)
    segments.get_ahead(batch_id, 0)
    upstream.reset()
    t0 = time.monotonic()
    threads = [threading.Thread(target=_worker, args=(queue, ports, outcomes), daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1200)
    total = {**upstream.stats(), "seconds": time.monotonic() - t0}
    batch = batches.get(TENANT, batch_id, consistent=True)
    if batch is None or batch.completed != lines:
        raise RuntimeError(f"not every line was answered: {batch and batch.completed} of {lines}, "
                           f"outcomes {sorted(set(outcomes))}")
    ideal = LIMIT / LATENCY
    if not window.get("ok"):  # the queue ran dry before any answer (fewer chunks than workers): the whole run
        window = total
    return {"saturation": window["ok"] / window["seconds"] / ideal,
            "share_429": window["throttled"] / max(1, window["ok"] + window["throttled"]),
            "overall": lines / total["seconds"] / ideal,
            "overall_429": total["throttled"] / max(1, total["ok"] + total["throttled"]),
            "max_in_flight": total["max_in_flight"], "busy": outcomes.count("busy"),
            "window_seconds": window["seconds"]}


def run(lines: int) -> SectionResult:
    res = SectionResult(f"7. Rate-limited upstream, {lines:,} lines: N={LIMIT} at once, L={LATENCY * 1000:.0f} ms, "
                        f"{WORKERS} workers x {PER_WORKER} lanes")
    # DynamoDB applies conditional writes atomically; moto's threaded server does not (two leases of
    # one block could both win), so its DynamoDB actions run under a lock, as in local mode.
    saved = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # a metrics document per chunk run: not on the figures' stdout
    try:
        with LimitedUpstream(LIMIT, LATENCY) as upstream, MotoServer(atomic=True):
            create_engine_resources()
            capped = _run(upstream, lines, capped=True)
            uncapped = _run(upstream, lines // 2, capped=False)  # 7 chunks or more: more than the workers
    finally:
        if saved is None:
            os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
        else:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = saved
    res.figures += [
        at_least("upstream_saturation_ratio", capped["saturation"], 0.9),
        at_most("upstream_429_share", capped["share_429"], 0.05),
        info("upstream_saturation_ratio_overall", capped["overall"]),
        info("upstream_max_in_flight", capped["max_in_flight"]),
        info("upstream_saturation_ratio_no_cap", uncapped["saturation"]),
        info("upstream_429_share_no_cap", uncapped["share_429"]),
    ]
    res.notes += [
        f"saturation = lines answered / s while every chunk was still queued or running (the first "
        f"{capped['window_seconds']:.0f} s, until the queue ran dry) / (N / L); overall = the whole batch, "
        "its last chunk runs alone included",
        f"429 share = 429 answers / requests at the upstream in the same window; {capped['busy']} chunk runs "
        "found no free block and handed their chunk back",
        f"global cap = global_concurrency {LIMIT} in blocks of {PER_WORKER} (adapters/upstream_cap.py); "
        f"no cap = the same workers with only their own AIMD windows, {lines // 2:,} lines",
    ]
    return res


if __name__ == "__main__":
    try:
        asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2])))
    except KeyboardInterrupt:
        pass
