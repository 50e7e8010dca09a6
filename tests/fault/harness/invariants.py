"""The invariants checked after each run (every custom_id exactly once across output and error files,
counts and usage equal the files, legal status transitions, terminal status, no open chunk or live
lease) and after a sweep (the chunk queue and its DLQ are empty)."""
from __future__ import annotations

import faulthandler
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import openai

from batchgate.domain import status as st
from batchgate.handlers import engine_deps

from .plan import BIG_NUMBER, DEEP_LEVELS, RunSpec
from .transitions import bad_transitions

if TYPE_CHECKING:
    from .report import RunResult
    from .world import World

TERMINAL = frozenset(st.TERMINAL)
NOT_RUN_CODES = frozenset({"batch_cancelled", "batch_expired"})


def dump_threads(batch_id: str) -> str:
    """Every thread's stack, to a file: where a Lambda that never ended (an in-process thread in local
    mode) is blocked. Returns the file's path."""
    path = Path(".local") / f"stuck-{batch_id}.txt"
    path.parent.mkdir(exist_ok=True)
    with path.open("w") as fh:
        faulthandler.dump_traceback(fh, all_threads=True)
    return str(path)


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
        p.append(f"threads: {dump_threads(batch.id)}")
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


def dead_letter_chunks(world: World) -> list[str]:
    """What the DLQ's pointers name: `batch/chunk state` (a pointer to a closed chunk was a spare copy;
    one to an open chunk is work that waits for the batch to expire)."""
    from batchgate.adapters.chunk_store import ChunkStore

    sqs, chunks, seen = boto3.client("sqs"), ChunkStore(world.table), []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=world.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        if not got.get("Messages"):
            break
        for m in got["Messages"]:
            body = json.loads(m["Body"])
            chunk = chunks.get(body["batch_id"], body["chunk"])
            seen.append(f"{body['batch_id']}/{body['chunk']} {chunk.state if chunk else 'missing'}")
    return seen


def held_quotas(world: World) -> dict[str, int]:
    """Each tenant's quota counters that are not zero (once every batch has ended, all must be)."""
    from boto3.dynamodb.conditions import Key

    table = boto3.resource("dynamodb").Table(world.table)
    held = {}
    for _key, tenant in world.tenants:
        items = table.query(KeyConditionExpression=Key("pk").eq(f"T#{tenant}") & Key("sk").begins_with("QUOTA#"),
                            ConsistentRead=True)["Items"]
        held.update({f"{tenant} {i['sk']}": int(i["n"]) for i in items if int(i.get("n", 0))})
    return held


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
        problems.append(f"{depth} messages in the DLQ ({world.timed_out()} invocations outlived their timeout); "
                        f"their chunks: {', '.join(dead_letter_chunks(world))}")
    if counts := held_quotas(world):
        problems.append(f"quota counters not back to zero after every batch ended: {counts}")
    if world.upstream is not None and world.upstream.cookies:
        problems.append(f"the upstream got cookies back: {world.upstream.cookies[:3]}")
    return problems
