"""Fault injection through the real workflow: local mode (the synthesized state machine in moto, the real
handlers in-process) driven by the official openai SDK, while a seeded schedule

- crashes chunk workers at each step (`SimulatedCrash`, a BaseException: like a Lambda that dies, it
  skips the engine's `except` clean-up, keeps the chunk lease and leaves the SQS message un-acked, so
  the message comes back after the queue's visibility timeout);
- re-sends copies of chunk messages with random delays (duplicate and re-ordered deliveries);
- answers DynamoDB, S3 and SQS calls with throttling / 5xx errors at the HTTP layer (botocore
  `before-send`), so botocore's standard retry mode retries them as it would in AWS;
- marks lines for the dev upstream's 429 / 500 / 400 / slow / timeout behaviour;
- cancels at a random moment, or gives the batch a short completion window so it expires mid-run.

After each run `check_run` verifies the invariants (every custom_id exactly once across output and
error files, counts and usage equal the files, legal status transitions, terminal status, no open
chunk or live lease); `check_quiet` verifies that nothing is left in the chunk queue or its DLQ.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import boto3
import openai
from boto3.dynamodb.conditions import Key
from botocore.awsrequest import AWSResponse

from batchgate import aws, settings as bg_settings
from batchgate.adapters import chunk_store, events, segments
from batchgate.domain import status as st
from batchgate.domain import worker
from batchgate.handlers import chunk_worker, engine_deps

TERMINAL = frozenset(st.TERMINAL)
NOT_RUN_CODES = frozenset({"batch_cancelled", "batch_expired"})

# Worker steps a crash can hit, in the order a chunk run reaches them.
CRASH_STEPS = ("after_claim", "before_upstream", "after_upstream", "after_data", "after_record",
               "after_commit", "before_signal", "before_ack")

# Timing of the harness's world. The in-process runtime does not kill a worker at its timeout, so the
# lease margin must cover a late flush (S3 + DynamoDB with injected retries); local mode's poller does
# treat a worker that outlived its timeout as timed out, as Lambda would, and acks nothing of its run
# (its message may be back with another worker by then). A crashed chunk's message that comes back
# while its lease is live finds it "busy" and re-sends itself delayed to the lease's end.
WORKER_TIMEOUT_SECONDS = 6
LEASE_MARGIN_SECONDS = 3.0
QUEUE_VISIBILITY_SECONDS = 11
UPSTREAM_TIMEOUT_SECONDS = 0.8
SERVICE_OVERRIDES = {
    "chunk_max_lines": 10,
    "worker_max_concurrency": 4,
    "completion_window_seconds": 600,
    # Few attempts with a short timeout, so permanently failing or hanging lines end as error lines
    # within one short worker run instead of being deferred forever.
    "upstreams": {"upstreams": {"default": {"max_attempts": 3, "timeout_seconds": UPSTREAM_TIMEOUT_SECONDS,
                                            "connect_timeout_seconds": 2.0}}},
}
WORKER_LIMITS = worker.WorkerLimits(status_poll_seconds=1.0, stop_reserve_seconds=90.0,
                                    cancel_reserve_seconds=30.0, flush_seconds=1.0,
                                    lease_margin_seconds=LEASE_MARGIN_SECONDS)


class SimulatedCrash(BaseException):
    """A worker dying mid-step (timeout, OOM, lost host): nothing after it runs, not even `finally`
    clean-up that would release the lease (the harness drops that release)."""


# -- crashes -------------------------------------------------------------------------------------


class CrashInjector:
    """Counts each worker step per batch and raises SimulatedCrash at the armed call numbers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, set[tuple[str, int]]] = {}
        self._calls: Counter = Counter()
        self.crashed: Counter = Counter()   # batch id -> crashes raised
        self.log: list[tuple[str, str, int]] = []

    def arm(self, batch_id: str, points: set[tuple[str, int]]) -> None:
        with self._lock:
            self._plans[batch_id] = set(points)

    def disarm(self, batch_id: str) -> None:
        with self._lock:
            self._plans.pop(batch_id, None)

    def step(self, batch_id: str, name: str) -> None:
        with self._lock:
            self._calls[(batch_id, name)] += 1
            n = self._calls[(batch_id, name)]
            if (name, n) not in self._plans.get(batch_id, ()):
                return
            self.crashed[batch_id] += 1
            self.log.append((batch_id, name, n))
        raise SimulatedCrash(f"{name}#{n} of {batch_id}")


def _crashing() -> bool:
    return isinstance(sys.exc_info()[1], SimulatedCrash)


def install_crash_hooks(mp, crashes: CrashInjector) -> None:
    """Wrap the engine's step functions (pytest MonkeyPatch `mp` undoes it)."""
    CS, SS, Run = chunk_store.ChunkStore, segments.SegmentStore, worker._ChunkRun
    claim, release, commit = CS.claim, CS.release, CS.commit_segment
    put_data, put_record = SS.put_data, SS.put_record
    run_lines, one = Run._run_lines, Run._one
    signal, record_handler = worker.signal_if_complete, chunk_worker.record_handler

    def claim_(self, batch_id, n, *a, **kw):
        got = claim(self, batch_id, n, *a, **kw)
        if got is not None:
            crashes.step(batch_id, "after_claim")
        return got

    def release_(self, batch_id, n, owner):
        if _crashing():
            return  # a dead worker releases nothing: the lease runs out
        return release(self, batch_id, n, owner)

    def commit_(self, tenant, batch_id, *a, **kw):
        ok = commit(self, tenant, batch_id, *a, **kw)
        if ok:
            crashes.step(batch_id, "after_commit")
        return ok

    def put_data_(self, batch_id, *a, **kw):
        put_data(self, batch_id, *a, **kw)
        crashes.step(batch_id, "after_data")

    def put_record_(self, batch_id, *a, **kw):
        ok = put_record(self, batch_id, *a, **kw)
        crashes.step(batch_id, "after_record")
        return ok

    async def run_lines_(self):
        crashes.step(self.msg.batch_id, "before_upstream")
        return await run_lines(self)

    async def one_(self, client, line):
        await one(self, client, line)
        crashes.step(self.msg.batch_id, "after_upstream")

    def signal_(tenant, batch_id, ports):
        crashes.step(batch_id, "before_signal")
        return signal(tenant, batch_id, ports)

    def record_handler_(record, lambda_context):
        out = record_handler(record, lambda_context)
        crashes.step(record.body.batch_id, "before_ack")
        return out

    mp.setattr(CS, "claim", claim_)
    mp.setattr(CS, "release", release_)
    mp.setattr(CS, "commit_segment", commit_)
    mp.setattr(SS, "put_data", put_data_)
    mp.setattr(SS, "put_record", put_record_)
    mp.setattr(Run, "_run_lines", run_lines_)
    mp.setattr(Run, "_one", one_)
    mp.setattr(worker, "signal_if_complete", signal_)
    mp.setattr(chunk_worker, "record_handler", record_handler_)
    mp.setattr(engine_deps, "worker_limits", lambda: WORKER_LIMITS)


# -- AWS faults ----------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def _json_error(status: int, code: str, prefix: str) -> tuple[int, dict, bytes]:
    body = json.dumps({"__type": f"{prefix}#{code}", "message": f"injected {code}"}).encode()
    return status, {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "fault"}, body


def _xml_error(status: int, code: str) -> tuple[int, dict, bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected {code}</Message><RequestId>fault</RequestId></Error>").encode()
    return status, {"content-type": "application/xml", "x-amz-request-id": "fault"}, body


# service -> the errors AWS answers under load (all retryable by botocore's standard mode)
AWS_ERRORS: dict[str, list[Callable[[], tuple[int, dict, bytes]]]] = {
    "dynamodb": [
        lambda: _json_error(400, "ProvisionedThroughputExceededException", "com.amazonaws.dynamodb.v20120810"),
        lambda: _json_error(400, "ThrottlingException", "com.amazonaws.dynamodb.v20120810"),
        lambda: _json_error(500, "InternalServerError", "com.amazonaws.dynamodb.v20120810"),
    ],
    "s3": [
        lambda: _xml_error(503, "SlowDown"),
        lambda: _xml_error(500, "InternalError"),
        lambda: _xml_error(503, "ServiceUnavailable"),
    ],
    "sqs": [
        lambda: _json_error(400, "ThrottlingException", "com.amazonaws.sqs"),
        lambda: _json_error(500, "InternalFailure", "com.amazon.coral.service"),
        lambda: _json_error(503, "ServiceUnavailable", "com.amazon.coral.service"),
    ],
}


class AwsFaults:
    """Answers a seeded fraction of the engine's DynamoDB/S3/SQS requests with an AWS error, before
    they reach moto (so the request was not applied), never more than `max_per_call` attempts of one
    API call in a row (botocore makes 5)."""

    def __init__(self, seed: int, rate: float = 0.04, max_per_call: int = 2):
        self.rng = random.Random(seed)
        self.rate, self.max_per_call = rate, max_per_call
        self.enabled = False
        self.injected: Counter = Counter()
        self.calls = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def _before_call(self, **_) -> None:
        self._local.injected = 0

    def _before_send(self, request, service: str, **_) -> AWSResponse | None:
        with self._lock:
            self.calls += 1
            if (not self.enabled or getattr(self._local, "injected", 0) >= self.max_per_call
                    or self.rng.random() >= self.rate):
                return None
            status, headers, body = self.rng.choice(AWS_ERRORS[service])()
            self.injected[(service, status)] += 1
        self._local.injected = getattr(self._local, "injected", 0) + 1
        return AWSResponse(request.url, status, headers, _Raw(body))

    def register(self, service: str, client) -> None:
        client.meta.events.register(f"before-call.{service}.*", self._before_call)
        client.meta.events.register(f"before-send.{service}.*",
                                    lambda request, _s=service, **kw: self._before_send(request, _s))

    def install(self) -> None:
        """Register on the clients the functions use (batchgate.aws caches one per service)."""
        for service, c in [("dynamodb", aws.client("dynamodb")), ("dynamodb", aws.resource("dynamodb").meta.client),
                           ("s3", aws.client("s3")), ("sqs", aws.client("sqs"))]:
            self.register(service, c)


class AppliedThenLost:
    """An ambiguous failure: the request reaches moto and is applied, but the answer is lost and
    the caller sees a 500 (a DynamoDB InternalServerError or a read timeout after the write
    committed), so botocore retries a write that already happened. Armed for the first `times`
    requests of `operation` whose body contains `needle`."""

    def __init__(self, service: str, operation: str, needle: bytes, times: int = 1):
        self.service, self.operation, self.needle, self.left = service, operation, needle, times
        self.fired = 0
        self._lock = threading.Lock()

    def _before_send(self, request, event_name: str = "", **_) -> AWSResponse | None:
        if not event_name.endswith(f".{self.operation}"):
            return None
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        with self._lock:
            if self.left <= 0 or self.needle not in body:
                return None
            self.left -= 1
            self.fired += 1
        from botocore.httpsession import URLLib3Session
        URLLib3Session().send(request)  # applied...
        status, headers, raw = _json_error(500, "InternalServerError", "com.amazonaws.dynamodb.v20120810") \
            if self.service != "s3" else _xml_error(500, "InternalError")
        return AWSResponse(request.url, status, headers, _Raw(raw))  # ...but the caller hears a 500

    @contextmanager
    def installed(self) -> Iterator[AppliedThenLost]:
        """Armed on the functions' clients while the block runs."""
        clients = [aws.client(self.service)]
        if self.service == "dynamodb":
            clients.append(aws.resource("dynamodb").meta.client)
        event = f"before-send.{self.service}.{self.operation}"
        for c in clients:
            c.meta.events.register(event, self._before_send)
        try:
            yield self
        finally:
            for c in clients:
                c.meta.events.unregister(event, self._before_send)


# -- status transitions --------------------------------------------------------------------------


class TransitionLog:
    """Every published status change, in publication order (each follows its conditional write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_batch: dict[str, list[str]] = {}

    def install(self, mp) -> None:
        original = events.EventPublisher.batch_status
        log = self

        def batch_status(self, tenant, batch_id, status, at=None):
            with log._lock:
                log.by_batch.setdefault(batch_id, []).append(status)
            return original(self, tenant, batch_id, status, at)

        mp.setattr(events.EventPublisher, "batch_status", batch_status)

    def of(self, batch_id: str) -> list[str]:
        with self._lock:
            return list(self.by_batch.get(batch_id, []))

    def settled(self, batch_id: str, final: str, timeout: float = 10.0) -> list[str]:
        """The batch's events once its final status has been published: each event follows its
        conditional write, so a client can see the new status a moment before the event exists."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.of(batch_id)
            if (seen and seen[-1] == final) or time.monotonic() >= deadline:
                return seen
            time.sleep(0.05)


def bad_transitions(statuses: list[str], final: str | None) -> list[str]:
    """Illegal steps in validating -> statuses..., plus a last status that is not the batch's."""
    seq = ["validating", *statuses]
    bad = [f"{a}->{b}" for a, b in zip(seq, seq[1:]) if not st.is_legal(a, b)]
    if final is not None and seq[-1] != final:
        bad.append(f"last event {seq[-1]} but status {final}")
    return bad


# -- runs ----------------------------------------------------------------------------------------


@dataclass
class LineSpec:
    custom_id: str
    marker: str
    expect_ok: bool | None    # None: either file


@dataclass
class RunSpec:
    seed: int
    kind: str                 # "faults" | "cancel" | "expire"
    lines: list[LineSpec]
    crash_points: set[tuple[str, int]]
    duplicates: int
    cancel_after: float | None
    window_seconds: int | None


DEEP_LINE, BIG_NUMBER_LINE = "deep-line", "big-number-line"   # lines the upstream echoes back
DEEP_LEVELS, BIG_NUMBER = 600, 2**70
# marker -> whether the line ends in the output file (True) or the error file (False)
UPSTREAM_MARKERS: list[tuple[str, bool | None, float]] = [   # (marker, ends ok (None: either), weight)
    ("", True, 8.0),
    ("__fail_429_once__", True, 1.0),
    ("__fail_429_ms_once__", True, 1.0),
    ("__fail_500_once__", True, 1.0),
    ("__fail_500__", False, 0.5),
    ("__fail_400__", False, 0.5),
    # 50-600 ms against the 0.8 s upstream timeout: on a loaded machine a slow answer can still miss
    # it (a 200-run sweep beside another saw 4 of ~2,000), so either file is right; what these lines
    # test is that slow answers are kept once and in order, not where a timing race puts them.
    ("__sleep_ms:{ms}__", None, 1.5),
    # Longer than the upstream timeout: request_timeout, usually. The worker's AWS calls are
    # synchronous and block its event loop (a throttled flush backs off for seconds), and an answer
    # that arrived meanwhile is read before the timeout fires, so either file is right.
    ("__sleep_ms:1500__", None, 0.3),
    # A hostile upstream and hostile lines (issue 9): each must end where it says, and change nothing
    # for any other line.
    ("__usage_huge__", True, 0.3),
    ("__usage_negative__", True, 0.3),
    ("__set_cookie__", True, 0.3),
    ("__redirect__", False, 0.2),
    ("__not_json__", True, 0.2),
    ("__deep_answer__", True, 0.2),
    ("__huge_answer__", True, 0.015),
    (DEEP_LINE, True, 0.3),
    (BIG_NUMBER_LINE, True, 0.3),
]
# Cancels may land at any moment, before the Validate step too (test_fault_targeted.py pins that case).
CANCEL_NOT_BEFORE_SECONDS = 0.0


INVALID_CUSTOM_ID = "\U0001F600" * 100   # 1,002 duplicates of it: errors far over 400 KB if unbounded


def plan_run(seed: int, kind: str | None = None) -> RunSpec:
    rng = random.Random(seed)
    kind = kind or rng.choices(["faults", "cancel", "expire", "invalid"], weights=[3, 1, 1, 0.5])[0]
    if kind == "invalid":  # huge error quotes: the batch must fail with its errors stored
        return RunSpec(seed=seed, kind=kind, lines=[LineSpec(INVALID_CUSTOM_ID, "", False)] * 1002,
                       crash_points=set(), duplicates=0, cancel_after=None, window_seconds=None)
    n = rng.randint(30, 120) if kind != "expire" else rng.randint(60, 120)
    lines = []
    for i in range(n):
        marker, ok, _ = rng.choices(UPSTREAM_MARKERS, weights=[w for *_, w in UPSTREAM_MARKERS])[0]
        if kind == "expire" and marker == "" and rng.random() < 0.5:
            marker = "__sleep_ms:{ms}__"  # slow enough that the window closes mid-run
        marker = marker.format(ms=rng.randint(50, 600))
        lines.append(LineSpec(f"s{seed}-l{i}", marker, ok))
    n_crashes = rng.choice([0, 1, 2, 2, 3, 3])
    points: set[tuple[str, int]] = set()
    for _ in range(n_crashes):
        name = rng.choice(CRASH_STEPS)
        points.add((name, rng.randint(1, 30 if name == "after_upstream" else 4)))
    return RunSpec(seed=seed, kind=kind, lines=lines, crash_points=points,
                   duplicates=rng.randint(0, 8),
                   cancel_after=rng.uniform(CANCEL_NOT_BEFORE_SECONDS, 7.0) if kind == "cancel" else None,
                   window_seconds=rng.randint(3, 9) if kind == "expire" else None)


def input_bytes(spec: RunSpec) -> bytes:
    out = []
    for line in spec.lines:
        body: dict[str, Any] = {"model": "fault-model",
                                "messages": [{"role": "user", "content": f"{line.custom_id} {line.marker}"}]}
        if line.marker in (DEEP_LINE, BIG_NUMBER_LINE):
            body["messages"][0]["content"] += " __echo_raw__"
            body["tree" if line.marker == DEEP_LINE else "seed"] = \
                json.loads("[" * DEEP_LEVELS + "]" * DEEP_LEVELS) if line.marker == DEEP_LINE else BIG_NUMBER
        out.append(json.dumps({"custom_id": line.custom_id, "method": "POST", "url": "/v1/chat/completions",
                               "body": body}))
    return ("\n".join(out) + "\n").encode()


def answer_problem(custom_id: str, body: Any) -> str | None:
    """An output body that is not the answer to this very line (another line's, or another tenant's),
    or an echoed line that did not reach the upstream exactly as written."""
    if isinstance(body, str):  # a text answer (__not_json__ / __deep_answer__): nothing to match
        return None
    if isinstance(body, dict) and "choices" in body:
        text = body["choices"][0]["message"]["content"]
        return None if f" {custom_id} " in f" {text} " else f"{custom_id}: answer of another line: {text[:80]!r}"
    if isinstance(body, dict) and "messages" in body:  # an echo of the request body
        if not body["messages"][0]["content"].startswith(f"{custom_id} "):
            return f"{custom_id}: echo of another line"
        if "tree" in body and body["tree"] != json.loads("[" * DEEP_LEVELS + "]" * DEEP_LEVELS):
            return f"{custom_id}: deep body changed on the way"
        if "seed" in body and body["seed"] != BIG_NUMBER:
            return f"{custom_id}: big number changed on the way: {body['seed']!r}"
        return None
    if isinstance(body, dict) and "filler" in body:
        return None
    return f"{custom_id}: unexpected output body {str(body)[:80]!r}"


@dataclass
class RunResult:
    spec: RunSpec
    batch_id: str | None = None
    status: str | None = None
    lost: int = 0
    duplicated: int = 0
    wrong_answers: int = 0   # output lines whose body is not their own line's answer
    bad_transitions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    crashes: int = 0
    crash_steps: list[str] = field(default_factory=list)
    duplicates_sent: int = 0
    seconds: float = 0.0
    transitions: list[str] = field(default_factory=list)


@dataclass
class World:
    """What a run needs of the running service (one LocalService per test session). Runs alternate
    between two tenants."""
    base_url: str
    tenants: list[tuple[str, str]]   # (api key, tenant)
    upstream: Any                     # the dev upstream (its `cookies` lists the Cookie headers it got)
    table: str
    queue_url: str
    dlq_url: str
    crashes: CrashInjector
    transitions: TransitionLog
    window_lock: threading.Lock = field(default_factory=threading.Lock)

    def tenant_of(self, spec: RunSpec | None) -> tuple[str, str]:
        return self.tenants[spec.seed % len(self.tenants) if spec else 0]

    def sdk(self, spec: RunSpec | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.tenant_of(spec)[0], max_retries=3, timeout=60)

    def create_batch(self, client: openai.OpenAI, file_id: str, window_seconds: int | None):
        """Create, with this run's completion window: only batch creation reads the window, from the
        functions' environment, so it is swapped for the create call alone."""
        if window_seconds is None:
            with self.window_lock:
                return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
        name = "BATCHGATE_COMPLETION_WINDOW_SECONDS"
        with self.window_lock:
            saved = os.environ.get(name)
            os.environ[name] = str(window_seconds)
            bg_settings.reset_settings()
            try:
                return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
            finally:
                if saved is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = saved
                bg_settings.reset_settings()

    def chunks(self, batch_id: str) -> list[dict]:
        table = boto3.resource("dynamodb").Table(self.table)
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(f"B#{batch_id}"), "ConsistentRead": True}
        items: list[dict] = []
        while True:
            resp = table.query(**kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _duplicator(world: World, spec: RunSpec, batch_id: str, stop: threading.Event, result: RunResult) -> None:
    """Re-send copies of this batch's chunk messages at random moments with random delays."""
    rng = random.Random(spec.seed * 7919 + 1)
    sqs = boto3.client("sqs")
    sent = 0
    while sent < spec.duplicates and not stop.wait(rng.uniform(0.2, 2.5)):
        chunks = world.chunks(batch_id)
        if not chunks:
            continue
        n = int(rng.choice(chunks)["sk"].split("#")[1])
        body = json.dumps({"tenant": world.tenant_of(spec)[1], "batch_id": batch_id, "chunk": n})
        sqs.send_message(QueueUrl=world.queue_url, MessageBody=body, DelaySeconds=rng.randint(0, 4))
        sent += 1
        result.duplicates_sent = sent


def _canceller(client: openai.OpenAI, batch_id: str, after: float, stop: threading.Event) -> None:
    if stop.wait(after):
        return
    try:
        client.batches.cancel(batch_id)
    except openai.ConflictError:
        pass  # already terminal


def execute_run(world: World, spec: RunSpec, timeout: float = 180.0) -> RunResult:
    result = RunResult(spec)
    t0 = time.monotonic()
    client = world.sdk(spec)
    try:
        file = client.files.create(file=("faults.jsonl", io.BytesIO(input_bytes(spec)), "application/jsonl"),
                                   purpose="batch")
        batch = world.create_batch(client, file.id, spec.window_seconds)
    except openai.APIError as exc:  # one run's failure is reported with its seed; the sweep goes on
        request = getattr(exc, "request", None)
        result.problems.append(f"could not start the batch: {exc!r}; request content-type "
                               f"{request.headers.get('content-type') if request else None!r}, "
                               f"content-length {request.headers.get('content-length') if request else None!r}")
        result.seconds = time.monotonic() - t0
        return result
    result.batch_id = batch.id
    world.crashes.arm(batch.id, spec.crash_points)
    stop = threading.Event()
    helpers = [threading.Thread(target=_duplicator, args=(world, spec, batch.id, stop, result),
                                daemon=True)]
    if spec.cancel_after is not None:
        helpers.append(threading.Thread(target=_canceller, args=(client, batch.id, spec.cancel_after, stop),
                                        daemon=True))
    for h in helpers:
        h.start()
    deadline = time.monotonic() + timeout
    while batch.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch.id)
    stop.set()
    for h in helpers:
        h.join()
    world.crashes.disarm(batch.id)
    result.status = batch.status
    result.crashes = world.crashes.crashed[batch.id]
    result.crash_steps = [f"{name}#{n}" for b, name, n in world.crashes.log if b == batch.id]
    result.seconds = time.monotonic() - t0
    check_run(world, client, spec, batch, result)
    return result


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if not file_id:
        return []
    return [json.loads(line) for line in client.files.content(file_id).read().splitlines() if line.strip()]


def _usage_of(body: Any) -> Counter:
    """What the service may count of an answer's usage: plausible token counts only (0..2**32-1)."""
    def n(value: Any) -> int:
        return value if type(value) is int and 0 <= value < 2**32 else 0
    u = (body.get("usage") if isinstance(body, dict) else None) or {}
    return Counter({"input_tokens": n(u.get("prompt_tokens", 0)), "output_tokens": n(u.get("completion_tokens", 0)),
                    "total_tokens": n(u.get("total_tokens", 0)),
                    "cached_tokens": n((u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)),
                    "reasoning_tokens": n((u.get("completion_tokens_details") or {}).get("reasoning_tokens", 0))})


def check_run(world: World, client: openai.OpenAI, spec: RunSpec, batch, result: RunResult) -> None:
    p = result.problems
    result.transitions = world.transitions.settled(batch.id, batch.status)
    if batch.status not in TERMINAL:
        p.append(f"not terminal after the deadline: {batch.status}")
        p.append(f"workflow: {where_waiting(batch.id)}")
        p.extend(f"chunk {c['sk']}: {c.get('state')}" for c in world.chunks(batch.id) if c.get("state") == "open")
        result.bad_transitions = bad_transitions(result.transitions, None)
        return
    result.bad_transitions = bad_transitions(result.transitions, batch.status)
    if spec.kind == "invalid":
        errors = batch.errors.data if batch.errors else []
        if batch.status != "failed" or not errors or {e.code for e in errors} != {"duplicate_custom_id"}:
            p.append(f"invalid input: status {batch.status}, errors {str(batch.errors)[:200]}")
        return
    if batch.status == "failed":
        p.append(f"batch failed: {batch.errors}")
        return
    out, err = _lines(client, batch.output_file_id), _lines(client, batch.error_file_id)
    expected = {line.custom_id: line for line in spec.lines}
    seen = Counter(line.get("custom_id") for line in out + err)
    result.lost = sum(1 for cid in expected if seen[cid] == 0)
    result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    strangers = set(seen) - set(expected)
    if strangers:
        p.append(f"unknown custom_ids in results: {sorted(map(str, strangers))[:5]}")
    # Lines must keep input order within each file.
    order = {cid: i for i, cid in enumerate(expected)}
    for name, lines in (("output", out), ("error", err)):
        idx = [order.get(line.get("custom_id"), -1) for line in lines]
        if idx != sorted(idx):
            p.append(f"{name} file not in input order")
    not_run = [line for line in err if (line.get("error") or {}).get("code") in NOT_RUN_CODES]
    counts = batch.request_counts
    if (counts.total, counts.completed, counts.failed) != (len(spec.lines), len(out), len(err) - len(not_run)):
        p.append(f"request_counts {counts} but files hold {len(out)} output / {len(err) - len(not_run)} failed "
                 f"/ {len(not_run)} not run of {len(spec.lines)}")
    usage = sum((_usage_of(line["response"]["body"]) for line in out), Counter())
    got = batch.usage
    got_usage = Counter({"input_tokens": got.input_tokens, "output_tokens": got.output_tokens,
                         "total_tokens": got.total_tokens,
                         "cached_tokens": got.input_tokens_details.cached_tokens,
                         "reasoning_tokens": got.output_tokens_details.reasoning_tokens}) if got else Counter()
    if +got_usage != +usage:
        p.append(f"usage {dict(got_usage)} but output bodies sum to {dict(usage)}")
    # Each line ended where its marker says (or was never run, if the batch was stopped).
    allowed_not_run = {"cancelled": "batch_cancelled", "expired": "batch_expired"}.get(batch.status)
    for line in out:
        spec_line = expected.get(line.get("custom_id"))
        if problem := answer_problem(str(line.get("custom_id")), (line.get("response") or {}).get("body")):
            p.append(problem)
            result.wrong_answers += 1
        if spec_line and spec_line.expect_ok is False:
            p.append(f"{spec_line.custom_id} ({spec_line.marker}) in the output file")
        if (line.get("response") or {}).get("status_code") != 200:
            p.append(f"{line.get('custom_id')}: non-200 in the output file")
    for line in err:
        spec_line = expected.get(line.get("custom_id"))
        code = (line.get("error") or {}).get("code")
        if code in NOT_RUN_CODES:
            if code != allowed_not_run:
                p.append(f"{line.get('custom_id')}: {code} in a {batch.status} batch")
        elif spec_line and spec_line.expect_ok:
            p.append(f"{spec_line.custom_id} ({spec_line.marker!r}) in the error file: {line}")
    now = time.time()
    for chunk in world.chunks(batch.id):
        if chunk.get("state") == "open":
            p.append(f"chunk {chunk['sk']} still open")
        if chunk.get("lease_until") is not None and float(chunk["lease_until"]) >= now:
            p.append(f"chunk {chunk['sk']} still leased")


def where_waiting(batch_id: str, last: int = 8) -> str:
    """Where a batch's execution is: its status and its last history events (type, state, error)."""
    arn = engine_deps.workflow().execution_arn(batch_id)
    sfn = boto3.client("stepfunctions")
    status = sfn.describe_execution(executionArn=arn)["status"]
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    events = [e for page in pages for e in page["events"]]
    steps = []
    for e in sorted(events, key=lambda e: e["id"])[-last:]:
        detail = next((v for k, v in e.items() if k.endswith("EventDetails")), {})
        what = detail.get("name") or detail.get("error") or detail.get("resourceType") or ""
        steps.append(f"{e['timestamp']:%H:%M:%S} {e['type']} {what}".rstrip())
    return f"{status}; " + " | ".join(steps)


def queue_depth(url: str) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return sum(int(v) for v in attrs.values())


def check_quiet(world: World, wait_seconds: float) -> list[str]:
    """After the runs: the chunk queue drains (crashed deliveries come back after the visibility
    timeout and find their chunk closed) and nothing went to the DLQ."""
    deadline = time.monotonic() + wait_seconds
    while queue_depth(world.queue_url) and time.monotonic() < deadline:
        time.sleep(0.5)
    problems = []
    if depth := queue_depth(world.queue_url):
        problems.append(f"{depth} messages left in the chunk queue")
    if depth := queue_depth(world.dlq_url):
        problems.append(f"{depth} messages in the DLQ")
    if world.upstream is not None and world.upstream.cookies:
        problems.append(f"the upstream got cookies back: {world.upstream.cookies[:3]}")
    return problems


@dataclass
class Sweep:
    runs: list[RunResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    aws_injected: Counter = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.runs)

    @property
    def duplicated(self) -> int:
        return sum(r.duplicated for r in self.runs)

    @property
    def bad(self) -> int:
        return sum(len(r.bad_transitions) for r in self.runs)

    @property
    def non_terminal(self) -> int:
        return sum(r.status not in TERMINAL for r in self.runs)

    @property
    def wrong_answers(self) -> int:
        return sum(r.wrong_answers for r in self.runs)

    def summary(self) -> str:
        return (f"fault injection: {len(self.runs)} runs, {self.lost} lost, {self.duplicated} duplicated, "
                f"{self.bad} bad transitions, {self.non_terminal} non-terminal, "
                f"{self.wrong_answers} answers not their line's own")

    def details(self) -> list[str]:
        statuses = Counter(r.status for r in self.runs)
        kinds = Counter(r.spec.kind for r in self.runs)
        out = [f"  {self.seconds:.1f}s; kinds {dict(kinds)}; final statuses {dict(statuses)}; "
               f"worker crashes {sum(r.crashes for r in self.runs)}; duplicate deliveries sent "
               f"{sum(r.duplicates_sent for r in self.runs)}; AWS errors injected "
               f"{sum(self.aws_injected.values())} {dict(self.aws_injected)}"]
        for r in self.runs:
            if r.problems or r.bad_transitions or r.lost or r.duplicated:
                out.append(f"  seed {r.spec.seed} ({r.spec.kind}) {r.batch_id} {r.status}: lost {r.lost}, "
                           f"duplicated {r.duplicated}, transitions {r.transitions}, bad {r.bad_transitions}, "
                           f"problems {r.problems[:5]}")
        steps = Counter(s.split("#")[0] for r in self.runs for s in r.crash_steps)
        slowest = max((r.seconds for r in self.runs), default=0.0)
        out.append(f"  crashes by step {dict(steps)}; slowest run {slowest:.1f}s")
        out.extend(f"  {p}" for p in self.problems)
        return out


def replace_worker_timeout(lambdas, seconds: int) -> None:
    """The worker function's Lambda timeout, as the in-process runtime reports it to the handler."""
    for spec in lambdas.specs:
        if spec.handler == "batchgate.handlers.chunk_worker.handler":
            lambdas.register(dataclasses.replace(spec, timeout_seconds=seconds))
