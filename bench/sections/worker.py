"""2. Worker throughput: the engine's real chunk path (domain/worker.py process_chunk +
adapters/upstream.py UpstreamClient, stores on a moto server) side by side with a bare client of the
same library sending the same request bodies at the same in-flight count, at 32 and at the default
in flight; and the bare HTTP clients compared (bench/clients.py) at an instant and a 1 s upstream."""
from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time

import orjson

from bench import cost
from bench.clients import CLIENTS
from bench.data import chat_line
from bench.engine_setup import TENANT, RecordingQueue, RecordingWorkflow, new_batch, stores
from bench.instant_upstream import InstantUpstream
from bench.measure import cpu_seconds
from bench.moto_server import MotoServer, create_engine_resources
from bench.report import SectionResult, at_least, info
from infra.config import get_config

LINES_PER_CHUNK = get_config("prod").limits.chunk_max_lines   # as deployed (infra/config.py)
SMALL_CHUNK = 500         # at 32 in flight (a default-size chunk would take a minute at 1 s), and the
                          # default before issue 10: a what-if at 256 in flight
WORKER_CLIENT = "aiohttp"  # the library adapters/upstream.py pools with
MODEL_LATENCY_S = 1.0     # the cost model's latency (bench/cost.py)


def default_in_flight() -> int:
    """UpstreamSettings.concurrency's default: requests in flight per worker."""
    from batchgate.contract import UpstreamSettings
    return int(UpstreamSettings.model_fields["concurrency"].default)


def _settings(base_url: str, in_flight: int):
    from batchgate.contract import UpstreamSettings
    return UpstreamSettings(base_url=base_url, concurrency=in_flight, max_attempts=3, timeout_seconds=30,
                            connect_timeout_seconds=5)


async def _engine(base_url: str, batch_id: str, n_chunks: int, in_flight: int) -> list[str]:
    """Each chunk as one SQS message would run it (one Lambda, batch size 1: chunks in sequence)."""
    from batchgate.adapters.upstream import UpstreamClient, close_pools
    from batchgate.domain.ports import WorkerPorts
    from batchgate.domain.worker import WorkerLimits, process_chunk
    from batchgate.models.engine import ChunkMessage

    batches, chunks, segments, files = stores()
    ports = WorkerPorts(batches=batches, chunks=chunks, segments=segments, files=files,
                        workflow=RecordingWorkflow(), queue=RecordingQueue(),
                        upstream=lambda model: UpstreamClient(_settings(base_url, in_flight), None))
    deadline = time.monotonic() + 900
    outcomes = []
    try:
        for n in range(n_chunks):
            outcomes.append(await process_chunk(ChunkMessage(tenant=TENANT, batch_id=batch_id, chunk=n), ports,
                                                WorkerLimits(), lambda: deadline - time.monotonic()))
    finally:
        await close_pools()
    return outcomes


def _timed(coro):
    """asyncio.run(coro) on a new loop: (result, wall seconds, CPU seconds)."""
    t, c = time.perf_counter(), cpu_seconds()
    out = asyncio.run(coro)
    return out, time.perf_counter() - t, cpu_seconds() - c


def _compare_clients(bodies: list[bytes], in_flights: tuple[int, ...], repeats: int,
                     latency_rounds: int) -> tuple[list, list[str]]:
    """Every available client, each in-flight count, an instant upstream and (with `latency_rounds`)
    one answering after MODEL_LATENCY_S: lines/s and this process's CPU ms per line."""
    figures, table = [], []
    upstreams = [("instant", 0.0, len(bodies), repeats)]
    if latency_rounds:
        upstreams.append((f"{MODEL_LATENCY_S:g}s", MODEL_LATENCY_S, 0, 1))
    for label, latency, n_lines, reps in upstreams:
        with InstantUpstream(latency) as up:
            for n in in_flights:
                lines = n_lines or n * latency_rounds
                sent = (bodies * (1 + lines // len(bodies)))[:lines]
                best: dict[str, tuple[float, float]] = {}
                for _ in range(reps):   # interleaved, best of each
                    for name, runner in CLIENTS.items():
                        ok, wall, cpu = _timed(runner(up.base_url, sent, n))
                        if ok != lines:
                            raise RuntimeError(f"{name} answered {ok} of {lines} lines")
                        w, c = best.get(name, (float("inf"), float("inf")))
                        best[name] = (min(w, wall), min(c, cpu))
                for name, (wall, cpu) in best.items():
                    figures += [info(f"client_{name}_{n}_{label}_lines_s", lines / wall, "lines/s"),
                                info(f"client_{name}_{n}_{label}_cpu_ms", cpu * 1000 / lines, "ms/line")]
                    table.append(f"{name:>8} {n:>4} in flight, {label:>7} upstream: {lines / wall:8,.0f} lines/s, "
                                 f"{cpu * 1000 / lines:6.2f} ms CPU per line")
    return figures, table


def _side_by_side(base_url: str, data: bytes, bodies: list[bytes], n: int, repeats: int,
                  per_chunk: int = LINES_PER_CHUNK) -> dict[str, float]:
    """The bare client and the engine on the same lines at `n` in flight, interleaved, best of each."""
    lines = len(bodies)
    n_chunks = -(-lines // per_chunk)
    bare_client = CLIENTS[WORKER_CLIENT]
    batch_ids = [new_batch(data, per_chunk)[0] for _ in range(repeats)]
    best = {"t_bare": float("inf"), "t_engine": float("inf"), "cpu_bare": float("inf"), "cpu_engine": float("inf")}
    for batch_id in batch_ids:
        ok, wall, cpu = _timed(bare_client(base_url, bodies, n))
        best["t_bare"], best["cpu_bare"] = min(best["t_bare"], wall), min(best["cpu_bare"], cpu)
        outcomes, wall, cpu = _timed(_engine(base_url, batch_id, n_chunks, n))
        best["t_engine"], best["cpu_engine"] = min(best["t_engine"], wall), min(best["cpu_engine"], cpu)
        batch = stores()[0].get(TENANT, batch_id, consistent=True)
        if ok != lines or set(outcomes) != {"done"} or batch.completed != lines:
            raise RuntimeError(f"runs did not answer every line at {n} in flight (bare ok={ok}, "
                               f"outcomes={set(outcomes)}, completed={batch.completed})")
    return best


def _max_rss_mb(base_url: str, data: bytes, in_flight: int) -> float:
    """Peak resident memory of a fresh process that imports the chunk worker's handler and runs the
    chunks of `data` at `in_flight` (what Lambda bills memory for is the whole process)."""
    batch_id = new_batch(data, LINES_PER_CHUNK)[0]
    n_chunks = -(-len(data.splitlines()) // LINES_PER_CHUNK)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-m", "bench.sections.worker", base_url, batch_id, str(n_chunks),
                          str(in_flight)], cwd=root, capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _sizing(res: SectionResult, overhead: float, rss_mb: float) -> list:
    """The worker's Lambda cost per million lines at each memory size, from what was just measured
    (bench/cost.py worker_sizing), and the cheapest size that fits; the deployed size's figures."""
    a = cost.Assumptions.from_infra(worker_overhead_s=overhead)
    table = cost.worker_sizing(a, overhead, rss_mb)
    deployed = get_config("prod").worker.memory_mb
    fitting = [mb for mb, row in table.items() if row["fits"]]
    cheapest = min(fitting, key=lambda mb: table[mb]["gb_s_per_million_lines"]) if fitting else None
    here = table.get(deployed) or cost.worker_sizing(a, overhead, rss_mb, (deployed,))[deployed]
    res.extra["worker_sizing"] = table
    res.notes += [f"worker sizing at {a.in_flight} in flight, {a.model_latency_s:g} s per request, "
                  f"{a.lines_per_chunk} lines per chunk (bench/cost.py worker_sizing; fits: memory >= 1.5 x peak "
                  "RSS and <= 0.5 of the vCPU share used):"] + [
        f"  {mb:>5} MB: {row['chunk_seconds']:5.2f} s per chunk, {row['gb_s_per_million_lines']:7,.0f} GB-s "
        f"(${row['usd_per_million_lines']:.4f}) per million lines, vCPU share used "
        f"{row['vcpu_share_used'] if row['vcpu_share_used'] is None else round(row['vcpu_share_used'], 2)}"
        f"{'' if row['fits'] else '  (does not fit)'}" for mb, row in table.items()]
    return [info("worker_memory_mb_deployed", deployed, "MB"),
            info("worker_memory_mb_cheapest_fit", cheapest, "MB"),
            info("worker_usd_per_million_lines", here["usd_per_million_lines"], "USD"),
            info("worker_vcpu_share_used", here["vcpu_share_used"])]


def _lines(n: int, size: int = 1024) -> bytes:
    return b"".join(chat_line(i, size) + b"\n" for i in range(n))


def _bodies(data: bytes) -> list[bytes]:
    return [orjson.dumps(orjson.loads(line)["body"]) for line in data.splitlines()]


def run(lines: int, repeats: int = 2) -> list[SectionResult]:
    default = default_in_flight()
    in_flights = tuple(sorted({32, default, 256}))
    res = SectionResult(f"2. Worker throughput vs a bare client, {'/'.join(map(str, in_flights))} in flight, "
                        f"{MODEL_LATENCY_S:g} s and instant upstream")
    data = _lines(lines)
    bodies = _bodies(data)
    at_latency: dict[int, tuple[int, dict[str, float]]] = {}
    chunk_at: dict[int, int] = {}
    instant: dict[int, dict[str, float]] = {}
    with MotoServer():
        create_engine_resources()
        # At the model latency: does the worker keep its in-flight slots as busy as a bare client?
        # One whole chunk at `n` in flight: 16 rounds of 500 lines at 32; at 256, a default-size chunk
        # (8 rounds at 2,000 lines; the quick size has 1,000 lines: 4).
        with InstantUpstream(MODEL_LATENCY_S) as upstream:
            for n in in_flights:
                per_chunk = chunk_at[n] = SMALL_CHUNK if n < 128 else LINES_PER_CHUNK
                n_lines = min(lines, per_chunk)
                sub = _lines(n_lines) if n_lines != lines else data
                at_latency[n] = (n_lines, _side_by_side(upstream.base_url, sub, _bodies(sub), n, 1,
                                                        per_chunk=per_chunk))
            # The same at 256 in flight with 500-line chunks (2 rounds each, the default before issue
            # 10): how much of the gap is the per-chunk overhead (informative).
            small = _lines(min(lines, 2 * SMALL_CHUNK))
            small_chunks = _side_by_side(upstream.base_url, small, _bodies(small), 256, 1, per_chunk=SMALL_CHUNK)
        # At an instant upstream: CPU per line, the worker's and the bare client's.
        with InstantUpstream() as upstream:
            asyncio.run(CLIENTS[WORKER_CLIENT](upstream.base_url, bodies[:200], 32))  # warm up
            for n in in_flights:
                instant[n] = _side_by_side(upstream.base_url, data, bodies, n, repeats)
            rss_mb = _max_rss_mb(upstream.base_url, _lines(lines, 4096), default)
    for n in in_flights:
        suffix = "" if n == 32 else f"_{n}"
        n_lines, m = at_latency[n]
        res.figures += [
            info(f"bare_lines_s{suffix}", n_lines / m["t_bare"], "lines/s"),
            info(f"worker_lines_s{suffix}", n_lines / m["t_engine"], "lines/s"),
            at_least(f"worker_ratio_vs_bare{suffix}", m["t_bare"] / m["t_engine"], 0.9),
            info(f"worker_cpu_ms_per_line{suffix}", m["cpu_engine"] * 1000 / n_lines, "ms"),
        ]
    res.figures.append(info(f"worker_ratio_vs_bare_256_chunk{SMALL_CHUNK}",
                            small_chunks["t_bare"] / small_chunks["t_engine"]))
    for n in in_flights:
        m = instant[n]
        res.figures += [
            info(f"instant_bare_lines_s_{n}", lines / m["t_bare"], "lines/s"),
            info(f"instant_worker_lines_s_{n}", lines / m["t_engine"], "lines/s"),
            info(f"instant_bare_cpu_ms_per_line_{n}", m["cpu_bare"] * 1000 / lines, "ms"),
            info(f"instant_worker_cpu_ms_per_line_{n}", m["cpu_engine"] * 1000 / lines, "ms"),
        ]
    # For the cost model (section 4), at the default in flight and the model latency: the worker's time
    # per chunk beyond the rounds of waiting, and its own CPU per line.
    n_lines, m = at_latency[default]
    n_chunks = -(-n_lines // chunk_at[default])
    rounds = -(-min(n_lines, chunk_at[default]) // default)
    overhead = max(0.0, m["t_engine"] / n_chunks - rounds * MODEL_LATENCY_S)
    res.extra["seconds_per_chunk"] = overhead
    cost.MEASURED["worker_cpu_s_per_line"] = m["cpu_engine"] / n_lines
    res.figures += [info("worker_overhead_s_per_chunk", overhead, "s"),
                    info("worker_cpu_ms_per_line_default", m["cpu_engine"] * 1000 / n_lines, "ms"),
                    info("worker_max_rss_mb", rss_mb, "MB")]
    res.figures += _sizing(res, overhead, rss_mb)
    res.notes += [
        f"engine = process_chunk over chunks of {SMALL_CHUNK} lines at 32 in flight and {LINES_PER_CHUNK:,} (the "
        "default) at 256, in sequence (claim, ranged GET, parse, "
        "send, result lines, segment PUTs, commit transaction) with S3/DynamoDB on a moto server",
        f"bare = a bare {WORKER_CLIENT} client (the worker's library: bench/clients.py), same bodies, same "
        "connection limit, reads each answer; upstream = bench/instant_upstream.py in its own process",
        f"ratios at a {MODEL_LATENCY_S:g} s upstream (the cost model's latency), whole chunks at each in-flight "
        f"count, once; instant_* figures: {lines:,} lines, best of {repeats}, interleaved (there the worker is "
        "bound by its own CPU per line: parsing, result lines, the chunk's AWS calls)",
        "cpu = this process's user+sys CPU per line (the upstream and moto run in other processes)",
        f"the worker's default in flight (UpstreamSettings.concurrency) is {default}: its overhead per chunk "
        f"(beyond {rounds} round(s) of {MODEL_LATENCY_S:g} s) and CPU per line feed the cost model of section 4",
        f"worker_max_rss_mb: peak RSS of a fresh process that imports the chunk worker handler and runs "
        f"{lines:,} lines of ~4 KB at {default} in flight against the instant upstream (answers ~0.6 KB)",
    ]
    out = [res]

    clients = SectionResult(f"2b. HTTP clients, bare, {'/'.join(map(str, (32, 256)))} in flight, "
                            f"instant and {MODEL_LATENCY_S:g} s upstream")
    latency_rounds = min(3, lines // 500)   # none at toy sizes: a 1 s upstream takes seconds per round
    n_compare = min(lines, 500)
    clients.figures, table = _compare_clients(bodies[:n_compare], (32, 256), repeats, latency_rounds)
    clients.notes += table + [
        f"{n_compare} lines at the instant upstream (best of {repeats}, clients interleaved); at the "
        f"{MODEL_LATENCY_S:g} s upstream {latency_rounds} rounds of the in-flight count, once"
        if latency_rounds else f"{n_compare} lines at the instant upstream; no latency runs at this size",
        "each client: one pool of exactly the in-flight count of keep-alive connections, one task per slot; "
        "httpx's cost grows with its pool (httpcore rescans every connection on each request and release: "
        "encode/httpcore#1035)",
    ]
    out.append(clients)
    return out


if __name__ == "__main__":   # _max_rss_mb's child: base_url batch_id n_chunks in_flight
    import batchgate.handlers.chunk_worker  # noqa: F401  (what the Lambda imports, for its memory)
    url, bid, chunks, flight = sys.argv[1:5]
    asyncio.run(_engine(url, bid, int(chunks), int(flight)))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
