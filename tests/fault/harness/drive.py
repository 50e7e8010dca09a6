"""Driving one run: upload, create, duplicate chunk messages and cancel on the side, wait for the
batch to end, then check it."""
from __future__ import annotations

import io
import json
import random
import threading
import time

import boto3
import openai

from .invariants import TERMINAL, check_run
from .plan import RunSpec, input_bytes
from .report import RunResult
from .world import World


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
