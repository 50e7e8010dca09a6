"""A cost model in USD per million input lines, from measured AWS call counts and Lambda durations
plus an assumed model latency. Model (upstream) cost excluded. Prices: AWS list prices, us-east-1."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PRICES = {
    "lambda_arm64_gb_s": 0.0000133334,    # first pricing tier
    "lambda_request": 0.20 / 1e6,
    "sqs_request": 0.40 / 1e6,           # standard queue, per 64 KB request
    "dynamodb_wru": 0.625 / 1e6,         # on-demand (Nov 2024 price)
    "dynamodb_rru": 0.125 / 1e6,
    "s3_put_class": 0.005 / 1000,        # PUT, COPY, POST, LIST; multipart parts count as PUTs
    "s3_get_class": 0.0004 / 1000,       # GET, HEAD
    "sfn_transition": 0.025 / 1000,      # Standard workflows
    "eventbridge_event": 1.0 / 1e6,      # custom events
    "apigw_rest_request": 3.50 / 1e6,    # REST API, first tier
}
S3_PUT_CLASS = {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
                "CompleteMultipartUpload", "ListObjectsV2", "ListObjects", "ListMultipartUploads",
                "ListParts"}
S3_GET_CLASS = {"GetObject", "HeadObject", "GetObjectTagging"}
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}
DDB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}
# Items the engine writes are under 2 KB (the batch item is the largest: it carries the task token).
WRU_PER_ITEM = 2
ENGINE_FUNCTIONS = ("wf_validate", "wf_dispatch", "chunk_worker", "wf_finalize")
USD_GOAL = 0.10   # per million lines at 1 s model latency (issue 10)
CALLS_GOAL = 0.02  # AWS calls per line, at an instant upstream and at 1 s model latency (issue 10)
# Lambda allocates CPU in proportion to memory: one vCPU at 1,769 MB (AWS Lambda docs, "Memory and
# computing power").
LAMBDA_MB_PER_VCPU = 1769
# Section 2 (bench/sections/worker.py) records what it measured here for section 4:
# "worker_cpu_s_per_line" -> the worker's own CPU per line at the default in-flight count.
MEASURED: dict[str, float] = {}


def default_in_flight() -> int:
    """UpstreamSettings.concurrency's default: requests in flight per worker."""
    from batchgate.contract import UpstreamSettings
    return int(UpstreamSettings.model_fields["concurrency"].default)


@dataclass
class Assumptions:
    model_latency_s: float = 1.0          # one upstream request
    in_flight: int = 32                   # requests in flight per worker (from_infra: UpstreamSettings.concurrency)
    lines_per_chunk: int = 2000           # BATCHGATE_CHUNK_MAX_LINES
    status_poll_s: float = 2.0            # the worker reads the batch this often (cancel/expiry)
    flush_s: float = 60.0                 # and commits a segment this often
    # Worker time per chunk beyond waiting on the model; None: the local-mode measurement. Local mode
    # runs the upstream, moto and every function in one process, so the worker section's figure
    # (the same code path, upstream and moto out of process) is the better estimate when available.
    worker_overhead_s: float | None = None
    # The worker's CPU per line (section 2); with it the model says how much of the worker's vCPU
    # share the modelled rate (in_flight / model latency lines per second) uses.
    worker_cpu_s_per_line: float | None = None
    memory_mb: dict = field(default_factory=lambda: {"chunk_worker": 1024, "wf_validate": 1024,
                                                     "wf_dispatch": 1024, "wf_finalize": 1024,
                                                     "api_files": 512, "api_batches": 512})

    @classmethod
    def from_infra(cls, env: str = "prod", **kw) -> Assumptions:
        """Memory sizes as deployed (infra/config.py), the default in flight per worker
        (contract.UpstreamSettings) and the worker CPU per line section 2 measured, if it ran."""
        from infra.config import get_config
        c = get_config(env)
        mem = {"chunk_worker": c.worker.memory_mb, "api_files": c.functions.api_memory_mb,
               "api_batches": c.functions.api_memory_mb,
               **{f: c.functions.workflow_memory_mb for f in ("wf_validate", "wf_dispatch", "wf_finalize")}}
        kw.setdefault("in_flight", default_in_flight())
        kw.setdefault("worker_cpu_s_per_line", MEASURED.get("worker_cpu_s_per_line"))
        return cls(memory_mb=mem, lines_per_chunk=c.limits.chunk_max_lines, **kw)


@dataclass
class Measured:
    """One batch run through local mode (instant upstream)."""
    lines: int
    calls: dict            # "service.Operation" -> count, engine functions + the SQS event source mapping
    write_items: int       # DynamoDB items written outside transactions
    transact_items: int    # DynamoDB items written inside transactions
    event_entries: int
    invocations: dict      # function -> (count, total seconds)
    sfn_transitions: int
    api_requests: int      # API Gateway requests the client made to run the batch (upload, create)


def vcpus(memory_mb: float) -> float:
    return memory_mb / LAMBDA_MB_PER_VCPU


def worker_chunk_seconds(lines_per_chunk: float, a: Assumptions, overhead_s: float, memory_mb: float) -> float:
    """A worker's wall time (billed) for one chunk at `memory_mb`: the rounds of model latency at
    `in_flight`, plus the overhead measured on a whole core (AWS calls, parsing, result lines, answers
    that arrive together). A Lambda below 1,769 MB gets part of a vCPU, so the CPU on that critical
    path takes longer: at most min(overhead, the chunk's whole CPU) of it, stretched by 1 / share (an
    upper bound). Never less than the chunk's CPU alone takes at that share."""
    share = vcpus(memory_mb)
    cpu = None if a.worker_cpu_s_per_line is None else a.worker_cpu_s_per_line * lines_per_chunk
    on_path = overhead_s if cpu is None else min(overhead_s, cpu)
    wall = (math.ceil(lines_per_chunk / a.in_flight) * a.model_latency_s + overhead_s
            + on_path * (max(1.0, 1.0 / share) - 1.0))
    if cpu is not None:
        wall = max(wall, cpu / share)
    return wall


def worker_sizing(a: Assumptions, overhead_s: float, rss_mb: float | None,
                  sizes_mb: tuple[int, ...] = (256, 384, 512, 640, 768, 1024, 1536, 1769)) -> dict[int, dict]:
    """For each worker memory size: GB-s per million lines (worker only), the share of its vCPU the
    worker uses, and whether it fits: memory >= 1.5 x the measured peak RSS, and CPU share used <= 0.5,
    so a CPU up to twice as slow as the bench machine's (Lambda's arm64 cores run Python slower than a
    desktop x86 core) still keeps up."""
    out = {}
    for mb in sizes_mb:
        wall = worker_chunk_seconds(a.lines_per_chunk, a, overhead_s, mb)
        cpu = None if a.worker_cpu_s_per_line is None else \
            a.worker_cpu_s_per_line * a.lines_per_chunk / wall / vcpus(mb)
        gb_s = wall * mb / 1024 * 1e6 / a.lines_per_chunk
        fits = (rss_mb is None or mb >= 1.5 * rss_mb) and (cpu is None or cpu <= 0.5)
        out[mb] = {"chunk_seconds": wall, "gb_s_per_million_lines": gb_s, "vcpu_share_used": cpu, "fits": fits,
                   "usd_per_million_lines": gb_s * PRICES["lambda_arm64_gb_s"]}
    return out


def model(m: Measured, a: Assumptions) -> dict:
    """USD per million lines, by component, and the calls per line with the modelled status polls."""
    per_line = 1.0 / m.lines
    chunks = max(1, m.invocations.get("chunk_worker", (0, 0.0))[0])
    lines_per_chunk = m.lines / chunks
    # Worker wall time per chunk: the model's time for its lines at `in_flight`, plus the overhead
    # measured at the model latency in section 2 (else the local-mode duration: an upper bound).
    worker_n, worker_s = m.invocations.get("chunk_worker", (0, 0.0))
    overhead = a.worker_overhead_s if a.worker_overhead_s is not None else worker_s / max(1, worker_n)
    worker_mb = a.memory_mb.get("chunk_worker", 1024)
    worker_wall = worker_chunk_seconds(lines_per_chunk, a, overhead, worker_mb)
    # The measured calls already hold the polls and flushes of the (shorter) local-mode runs: add
    # only the ones the longer modelled run makes on top.
    local_wall = worker_s / max(1, worker_n)
    polls = max(0, int(worker_wall // a.status_poll_s) - int(local_wall // a.status_poll_s))
    flushes = max(0, int(worker_wall // a.flush_s) - int(local_wall // a.flush_s))

    gb_s = 0.0
    invocations = 0
    for fn, (n, seconds) in m.invocations.items():
        mem_gb = a.memory_mb.get(fn, 1024) / 1024
        seconds = worker_n * worker_wall if fn == "chunk_worker" else seconds
        gb_s += seconds * mem_gb
        invocations += n

    calls = dict(m.calls)
    calls["dynamodb.GetItem"] = calls.get("dynamodb.GetItem", 0) + polls * worker_n
    # a mid-chunk flush: out + seg PUTs and the commit transaction
    calls["s3.PutObject"] = calls.get("s3.PutObject", 0) + 2 * flushes * worker_n
    calls["dynamodb.TransactWriteItems"] = calls.get("dynamodb.TransactWriteItems", 0) + flushes * worker_n
    transact_items = m.transact_items + 2 * flushes * worker_n

    def count(service: str, ops: set[str] | None = None) -> int:
        return sum(n for op, n in calls.items()
                   if op.startswith(service + ".") and (ops is None or op.split(".", 1)[1] in ops))

    ddb_reads = count("dynamodb", DDB_READS)
    wru = (m.write_items + 2 * transact_items) * WRU_PER_ITEM
    usd = {
        "lambda_compute": gb_s * PRICES["lambda_arm64_gb_s"],
        "lambda_requests": invocations * PRICES["lambda_request"],
        "sqs": count("sqs") * PRICES["sqs_request"],
        "dynamodb": wru * PRICES["dynamodb_wru"] + ddb_reads * PRICES["dynamodb_rru"],
        "s3": count("s3", S3_PUT_CLASS) * PRICES["s3_put_class"] + count("s3", S3_GET_CLASS) * PRICES["s3_get_class"],
        "step_functions": m.sfn_transitions * PRICES["sfn_transition"],
        "eventbridge": m.event_entries * PRICES["eventbridge_event"],
        "api_gateway": m.api_requests * PRICES["apigw_rest_request"],
    }
    usd_per_million = {k: v * per_line * 1e6 for k, v in usd.items()}
    # CPU the worker needs to keep `in_flight` requests going at the model latency, against the vCPU
    # share its memory size buys: above ~0.5 the worker would fall behind on a slower CPU.
    cpu_use = None
    if a.worker_cpu_s_per_line is not None:
        cpu_use = a.worker_cpu_s_per_line * lines_per_chunk / worker_wall / vcpus(worker_mb)
    return {
        "usd_per_million_lines": sum(usd_per_million.values()),
        "breakdown_usd_per_million_lines": usd_per_million,
        "aws_calls_per_line_at_model_latency": sum(calls.values()) * per_line,
        "worker_seconds_per_chunk": worker_wall,
        "worker_overhead_seconds_per_chunk": overhead,
        "modelled_extra_status_polls_per_chunk": polls,
        "lambda_gb_s_per_million_lines": gb_s * per_line * 1e6,
        "worker_vcpu_share_used_at_model_latency": cpu_use,
    }
