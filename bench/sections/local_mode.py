"""4. AWS calls per line and cost per million lines, 5. cancel latency and 6. fairness: whole batches through
local mode (batchgate_local.LocalService: the deployed state machine on moto, the real handlers
in-process, the development upstream), driven by the official openai SDK."""
from __future__ import annotations

import io
import time

import httpx  # noqa: F401  (imported before any handler thread: docs/performance.md, import race)
import openai

from bench import cost
from bench.aws_calls import ESM, CallLog, Instrumented
from bench.data import small_chat_lines
from bench.report import SectionResult, at_least, at_most, check, info

KEY, TENANT = "sk-bench-local", "bench"
SMALL_KEY, SMALL_TENANT = "sk-bench-small", "bench-small"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


class _Batches:
    """Reads batch status straight from the state table (an uninstrumented client), so polling for
    the end of a run neither invokes the API function nor adds to the counted calls."""

    def __init__(self, tenant: str = TENANT):
        import boto3

        from batchgate.settings import get_settings
        self.table = boto3.resource("dynamodb").Table(get_settings().table)
        self.tenant = tenant

    def get(self, batch_id: str) -> dict:
        return self.table.get_item(Key={"pk": f"T#{self.tenant}", "sk": f"BATCH#{batch_id}"},
                                   ConsistentRead=True).get("Item") or {}

    def wait(self, batch_id: str, statuses=TERMINAL, timeout: float = 600, every: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            item = self.get(batch_id)
            if item.get("status") in statuses:
                return item
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {item.get('status')} after {timeout} s")
            time.sleep(every)


class _EndEvents:
    """The end of a batch as an event: a rule on the service's bus sends its terminal status events to a
    queue this waits on with one long poll (moto wakes it when the event lands), so timing a run adds no
    polling to the process the run shares (section 4b)."""

    def __enter__(self) -> _EndEvents:
        import json

        import boto3

        from batchgate.settings import get_settings
        self.bus = get_settings().event_bus
        self.events, self.sqs = boto3.client("events"), boto3.client("sqs")
        self.url = self.sqs.create_queue(QueueName="bench-batch-ends")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events.put_rule(Name="bench-batch-ends", EventBusName=self.bus, EventPattern=json.dumps(
            {"source": ["batchgate"], "detail-type": [f"batch.{s}" for s in sorted(TERMINAL)]}))
        self.events.put_targets(Rule="bench-batch-ends", EventBusName=self.bus, Targets=[{"Id": "q", "Arn": arn}])
        return self

    def __exit__(self, *exc) -> None:
        self.events.remove_targets(Rule="bench-batch-ends", EventBusName=self.bus, Ids=["q"])
        self.events.delete_rule(Name="bench-batch-ends", EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.url)

    def wait(self, batch_id: str, timeout: float = 600) -> str:
        """The batch's terminal status, as soon as its event is published."""
        import json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=20).get("Messages", [])
            if messages:
                self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            for m in messages:
                detail = json.loads(m["Body"])["detail"]
                if detail["batch_id"] == batch_id:
                    return detail["status"]
        raise TimeoutError(f"no terminal event for batch {batch_id} within {timeout} s")


def _sfn_transitions(batch_id: str) -> int:
    import boto3
    sfn = boto3.client("stepfunctions")
    arn = next(e["executionArn"] for sm in sfn.list_state_machines()["stateMachines"]
               for e in sfn.list_executions(stateMachineArn=sm["stateMachineArn"])["executions"]
               if e["name"] == batch_id)
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    return sum(1 for e in events if e["type"].endswith("StateEntered"))


def _upload(client: openai.OpenAI, data: bytes) -> str:
    return client.files.create(file=("bench.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch").id


def _create(client: openai.OpenAI, file_id: str) -> str:
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                 completion_window="24h").id


def calls_and_cost(service, log: CallLog, client: openai.OpenAI, lines: int,
                   assumptions: cost.Assumptions) -> SectionResult:
    res = SectionResult(f"4. AWS calls per line and cost, one {lines:,}-line batch in local mode")
    data = small_chat_lines(lines, prefix="calls")
    file_id = _upload(client, data)
    log.clear()  # count from batch creation on (the upload is one request whatever the line count)
    t = time.perf_counter()
    batch_id = _create(client, file_id)
    batch = _Batches().wait(batch_id)
    elapsed = time.perf_counter() - t
    time.sleep(0.5)  # let the last worker invocation return (its acks are counted too)
    if batch.get("status") != "completed" or int(batch.get("completed", 0)) != lines:
        res.unavailable = f"batch ended {batch.get('status')} with {batch.get('completed')}/{lines} completed"
        return res
    engine = set(cost.ENGINE_FUNCTIONS) | {ESM}
    ops = log.by_operation(engine)
    engine_calls = sum(ops.values())
    invocations = {fn: (len(ts), sum(ts)) for fn, ts in log.invocations.items()}
    measured = cost.Measured(
        lines=lines, calls=dict(ops), write_items=sum(log.write_items[f] for f in engine),
        transact_items=sum(log.transact_items[f] for f in engine), event_entries=log.event_entries,
        invocations=invocations, sfn_transitions=_sfn_transitions(batch_id), api_requests=2)
    modelled = cost.model(measured, assumptions)
    per_fn = {fn: n for fn, n in log.by_function().items()}
    res.figures += [
        info("local_batch_seconds", elapsed, "s"),
        at_most("aws_calls_per_line", engine_calls / lines, cost.CALLS_GOAL, "calls"),
        at_most("aws_calls_per_line_at_model_latency", modelled["aws_calls_per_line_at_model_latency"],
                cost.CALLS_GOAL, "calls"),
        at_most("usd_per_million_lines", modelled["usd_per_million_lines"], cost.USD_GOAL, "USD"),
        info("worker_vcpu_share_at_model_latency", modelled["worker_vcpu_share_used_at_model_latency"]),
    ]
    for k, v in sorted(modelled["breakdown_usd_per_million_lines"].items(), key=lambda kv: -kv[1]):
        res.figures.append(info(f"  usd_{k}", v, "USD/M"))
    res.notes += [
        "calls by operation (engine functions + the SQS event source mapping's non-empty receives and "
        "deletes; upstream calls, the upload and status polling excluded): "
        + ", ".join(f"{op} {n}" for op, n in ops.most_common()),
        "calls by function: " + ", ".join(f"{fn} {n}" for fn, n in sorted(per_fn.items())),
        "invocations (count, mean s): " + ", ".join(
            f"{fn} {n} x {s / max(1, n):.3f}" for fn, (n, s) in sorted(invocations.items())),
        f"Step Functions transitions: {measured.sfn_transitions}; EventBridge entries: {measured.event_entries}",
        f"model: {assumptions.model_latency_s:g} s per upstream request, {assumptions.in_flight} in flight per "
        f"worker -> {modelled['worker_seconds_per_chunk']:.1f} s per chunk of "
        f"{lines / max(1, invocations.get('chunk_worker', (1, 0))[0]):.0f} lines "
        f"(+ {modelled['worker_overhead_seconds_per_chunk']:.2f} s per chunk measured at an instant upstream, "
        f"{'from section 2' if assumptions.worker_overhead_s is not None else 'in local mode'}, "
        f"{modelled['modelled_extra_status_polls_per_chunk']} status polls per chunk added to those measured); "
        "memory MB "
        + ", ".join(f"{k} {v}" for k, v in assumptions.memory_mb.items()),
        "prices (us-east-1 list): " + ", ".join(f"{k} ${v:.10g}" for k, v in cost.PRICES.items()),
        f"DynamoDB: {cost.WRU_PER_ITEM} WRU per written item (x2 in transactions), 1 RRU per read; "
        "excluded: model cost, CloudWatch Logs, S3 storage, idle queue polling; a batch's fixed costs "
        f"(validate, finalize, transitions) are spread over its {lines:,} lines (larger batches cost less per line)",
    ]
    res.extra = {"calls_by_operation": dict(ops), "cost": modelled,
                 "invocations": {k: list(v) for k, v in invocations.items()}}
    return res


def cancel_latency(service, client: openai.OpenAI, lines: int, sleep_ms: int) -> SectionResult:
    res = SectionResult(f"5. Cancel latency in local mode ({lines} lines, upstream answers in {sleep_ms} ms)")
    upstream = service.dev_upstream   # the built-in upstream records every request it gets
    data = small_chat_lines(lines, prefix="cancel", marker=f"__sleep_ms:{sleep_ms}__")
    file_id = _upload(client, data)
    before = len(upstream.calls) if upstream else 0
    batch_id = _create(client, file_id)
    batches = _Batches()
    batches.wait(batch_id, {"in_progress"} | TERMINAL, timeout=120, every=0.05)
    # Cancel once a good share of the lines have been sent upstream (or after a few seconds).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (upstream is None or len(upstream.calls) - before < lines // 4):
        time.sleep(0.05)
    sent_at_cancel = len(upstream.calls) - before if upstream else None
    t = time.perf_counter()
    client.batches.cancel(batch_id)
    batch = batches.wait(batch_id, timeout=300, every=0.05)
    latency = time.perf_counter() - t
    sent_after = (len(upstream.calls) - before - sent_at_cancel) if upstream else None
    if batch.get("status") != "cancelled":
        res.unavailable = f"batch ended {batch.get('status')} before/instead of cancelled"
        return res
    final = client.batches.retrieve(batch_id)
    out = _lines(client, final.output_file_id)
    err = _lines(client, final.error_file_id)
    not_run = sum(1 for e in err if (e.get("error") or {}).get("code") == "batch_cancelled")
    counts = final.request_counts
    complete = (len(out) == counts.completed and counts.completed + counts.failed + not_run == lines
                and len({x["custom_id"] for x in out + err}) == lines)
    res.figures += [
        info("cancel_latency_s", latency, "s"),
        info("cancel_completed_lines", counts.completed, "lines"),
        info("cancel_not_run_lines", not_run, "lines"),
        info("cancel_upstream_sends_after_cancel", sent_after, "requests"),
        check("cancel_partial_results_ok", complete and counts.completed > 0),
    ]
    res.notes += [
        f"cancel sent when {sent_at_cancel} of {lines} requests had been sent upstream; latency = "
        "cancel request -> status `cancelled` (the worker sees the cancel at its next status poll, "
        "commits what was answered, then Finalize writes the files)",
        "partial results ok = every line exactly once across the output file (completed) and the error "
        "file (failed + batch_cancelled)",
    ]
    return res


def fairness(client: openai.OpenAI, small_client: openai.OpenAI, big_lines: int,
             small_lines: int = 10, sleep_ms: int = 200) -> SectionResult:
    """Another tenant's small batch, alone and then beside a large batch (cancelled once the small one
    is done), with the batch lanes of this deployment and with every chunk queued at once (lanes 0, as
    before issue 10). Every request of both takes `sleep_ms` at the development upstream, as a model's
    does: against an instant upstream the large batch would be bound by CPU, and local mode runs every
    worker, moto and the upstream in one process on the machine's cores, so the small batch would be
    measuring that process's CPU contention (on AWS each worker has its own), not the scheduling."""
    import os

    from batchgate.contract import Env
    from batchgate.settings import get_settings, reset_settings

    res = SectionResult(f"6. Fairness in local mode: a {small_lines}-line batch of one tenant beside a "
                        f"{big_lines:,}-line batch of another (the upstream answers in {sleep_ms} ms)")
    marker = f"__sleep_ms:{sleep_ms}__"
    small_file = _upload(small_client, small_chat_lines(small_lines, prefix="fair-small", marker=marker))
    big_file = _upload(client, small_chat_lines(big_lines, prefix="fair-big", marker=marker))
    big_batches, small_batches = _Batches(TENANT), _Batches(SMALL_TENANT)

    def small_run() -> float:
        t = time.perf_counter()
        batch = small_batches.wait(_create(small_client, small_file), every=0.02)
        if batch.get("status") != "completed":
            raise RuntimeError(f"the small batch ended {batch.get('status')}")
        return time.perf_counter() - t

    def beside_big() -> tuple[float, int]:
        big = _create(client, big_file)
        # Running: validated and its chunks dispatched (each takes a worker for ~12 s at 200 ms).
        big_batches.wait(big, {"in_progress"} | TERMINAL, timeout=120, every=0.02)
        seconds = max(small_run() for _ in range(3))   # the slowest of three, one after another
        done_by_then = int(big_batches.get(big).get("completed", 0))
        try:
            client.batches.cancel(big)
        except openai.ConflictError:  # it is already ending (a fast machine, or a small quick size)
            pass
        big_batches.wait(big, every=0.1)
        return seconds, done_by_then

    lanes = get_settings().batch_lanes
    alone = min(small_run() for _ in range(2))
    with_lanes, big_done = beside_big()
    saved = os.environ.get(Env.BATCH_LANES)
    os.environ[Env.BATCH_LANES] = "0"
    reset_settings()
    try:
        without_lanes, big_done_without = beside_big()
    finally:
        os.environ[Env.BATCH_LANES] = saved or ""
        if saved is None:
            del os.environ[Env.BATCH_LANES]
        reset_settings()
    res.figures += [
        info("fairness_small_batch_alone_s", alone, "s"),
        info("fairness_small_batch_beside_big_s", with_lanes, "s"),   # the slowest of three
        at_most("fairness_ratio", with_lanes / alone, 2.0),
        info("fairness_ratio_without_lanes", without_lanes / alone, ""),
    ]
    res.notes += [
        f"lanes per batch: {lanes} (the workers' maximum concurrency in this environment, less the workers "
        "kept for other batches: infra/config.py WorkerConfig.batch_lanes); without lanes, "
        "every chunk of the large batch is queued at once and the small batch waits behind them",
        f"lines of the large batch answered by the time the small one completed: {big_done:,} with lanes, "
        f"{big_done_without:,} without (then it is cancelled)",
    ]
    return res


def _bare_workers(base_url: str, bodies: list[bytes], workers: int, in_flight: int) -> int:
    """`workers` threads, each a bare aiohttp client (the worker's library, bench/clients.py) with its own
    event loop and `in_flight` connections (the deployment's shape: one pool per worker), sharing the
    bodies; how many were answered 200."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from bench.clients import run_aiohttp
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda part: asyncio.run(run_aiohttp(base_url, part, in_flight)),
                            [bodies[i::workers] for i in range(workers)]))


FAST_MODEL_S = 0.1   # section 4b's "fast upstream": a small model's short answer


def e2e_vs_bare(lines: int, latency_s: float = FAST_MODEL_S) -> SectionResult:
    """A whole batch through local mode against an upstream answering in `latency_s`, next to a bare
    asyncio client (aiohttp, the worker's library) sending the same bodies at the same concurrency (a
    batch's lanes x requests in flight per worker) to it."""
    import orjson

    from batchgate_local import LocalService
    from batchgate_local.service import quiet_logs
    from bench.instant_upstream import InstantUpstream
    from infra.config import get_config

    res = SectionResult(f"4b. Local mode end to end, one {lines:,}-line batch, "
                        f"{f'{latency_s * 1000:g} ms' if latency_s else 'instant'} upstream, vs a bare client")
    data = small_chat_lines(lines, prefix="e2e")
    bodies = [orjson.dumps(orjson.loads(x)["body"]) for x in data.splitlines()]
    with InstantUpstream(latency_s) as upstream, \
            LocalService(api_keys={KEY: TENANT}, upstream_url=upstream.base_url) as service:
        quiet_logs("ERROR")
        local = get_config("local")   # what LocalService deploys (with the upstream's URL overridden)
        in_flight, workers = local.upstreams.for_model(None)[1].concurrency, local.worker.batch_lanes  # one batch's
        concurrency = workers * in_flight
        client = openai.OpenAI(base_url=service.base_url, api_key=KEY, max_retries=0, timeout=120)
        file_id = _upload(client, data)
        _bare_workers(upstream.base_url, bodies[:200], workers, in_flight)  # warm up
        t = time.perf_counter()
        ok = _bare_workers(upstream.base_url, bodies, workers, in_flight)
        t_bare = time.perf_counter() - t
        with _EndEvents() as ends:
            t = time.perf_counter()
            batch_id = _create(client, file_id)
            ends.wait(batch_id)
            t_e2e = time.perf_counter() - t
        batch = _Batches().get(batch_id)
    if ok != lines or batch.get("status") != "completed" or int(batch.get("completed", 0)) != lines:
        res.unavailable = f"bare ok={ok}; batch {batch.get('status')} {batch.get('completed')}/{lines}"
        return res
    suffix = "" if latency_s == FAST_MODEL_S else f"_{latency_s * 1000:g}ms"
    res.figures += [
        info(f"local_e2e_seconds{suffix}", t_e2e, "s"),
        info(f"local_bare_seconds{suffix}", t_bare, "s"),
        at_least("local_e2e_ratio_vs_bare", t_bare / t_e2e, 0.8) if not suffix else
        info(f"local_e2e_ratio_vs_bare{suffix}", t_bare / t_e2e),
    ]
    res.notes += [
        f"end to end = batches.create -> its batch.completed event (validate, dispatch, {workers} workers x "
        f"{in_flight} "
        f"in flight running the batch's {batch.get('chunk_count')} chunks, finalize, the state machine on moto); "
        "bare = "
        f"{workers} threads x a bare aiohttp client with "
        f"{in_flight} connections ({concurrency} in flight), the same bodies, on the same upstream "
        "(bench/instant_upstream.py, its own process), while the local service idles; all in a process "
        "of its own, as `make local` runs",
    ]
    return res


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    import orjson
    if not file_id:
        return []
    return [orjson.loads(x) for x in client.files.content(file_id).read().splitlines()]


def run(lines: int, cancel_lines: int, sleep_ms: int = 400,
        worker_overhead_s: float | None = None, fairness_lines: int = 10_000) -> list[SectionResult]:
    from batchgate_local import LocalService
    from batchgate_local.service import quiet_logs
    from infra.config import get_config

    log = CallLog()
    # Sections 4-6 model a deployment on AWS: its chunk size (local mode deploys the same one today).
    deployed = {"chunk_max_lines": get_config("prod").limits.chunk_max_lines}
    with Instrumented(log):
        t = time.perf_counter()
        with LocalService(api_keys={KEY: TENANT, SMALL_KEY: SMALL_TENANT}, overrides=deployed) as service:
            quiet_logs("ERROR")
            started = time.perf_counter() - t
            for p in getattr(service, "_pollers", []):  # what Lambda's SQS poller would call
                log.instrument_esm(p._sqs)
            client = openai.OpenAI(base_url=service.base_url, api_key=KEY, max_retries=0, timeout=120)
            results = []
            assumptions = cost.Assumptions.from_infra(worker_overhead_s=worker_overhead_s)
            small_client = openai.OpenAI(base_url=service.base_url, api_key=SMALL_KEY, max_retries=0, timeout=120)
            for title, fn, args in (
                    ("4. AWS calls per line and cost", calls_and_cost, (service, log, client, lines, assumptions)),
                    ("5. Cancel latency", cancel_latency, (service, client, cancel_lines, sleep_ms)),
                    ("6. Fairness", fairness, (client, small_client, fairness_lines))):
                try:
                    results.append(fn(*args))
                except Exception as exc:  # one section failing must not hide the others
                    results.append(SectionResult(title, unavailable=f"{type(exc).__name__}: {exc}"))
            results[0].notes.insert(0, f"local mode started in {started:.1f} s")
    # The goal figure at a fast model (FAST_MODEL_S per request); an instant upstream, where the batch's
    # fixed steps (create, validate, the state machine's transitions on moto, finalize: ~1.5 s) outweigh
    # 3,000 requests, for contrast.
    for latency_s in (FAST_MODEL_S, 0.0):
        try:
            results.append(e2e_in_own_process(3_000, latency_s))
        except Exception as exc:
            results.append(SectionResult("4b. Local mode end to end", unavailable=f"{type(exc).__name__}: {exc}"))
    return results


def e2e_in_own_process(lines: int, latency_s: float) -> SectionResult:
    """Section 4b in a fresh process, as `make local` runs: not in this one, which carries what the
    sections before it left (heap, threads, moto's modules)."""
    import os
    import pickle
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from infra.paths import ROOT

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pickle"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.run([sys.executable, "-m", "bench.sections.local_mode", str(lines), str(latency_s), str(out)],
                              cwd=ROOT, env=env, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, timeout=900)
        if proc.returncode or not out.is_file():
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return pickle.loads(out.read_bytes())


if __name__ == "__main__":   # e2e_in_own_process's child: LINES LATENCY_S OUT
    import pickle
    import sys
    from pathlib import Path

    Path(sys.argv[3]).write_bytes(pickle.dumps(e2e_vs_bare(int(sys.argv[1]), float(sys.argv[2]))))
