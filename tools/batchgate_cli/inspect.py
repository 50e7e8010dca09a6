"""`batchgate batches inspect ID --stack S [--tenant T] [--json]`: what an operator needs to see of one
batch: its status and counts, its chunks (cursor, state, lease), its result segments in S3, and where its
workflow is (the Step Functions execution, named after the batch, and its latest state).

Without `--tenant` the batch's tenant is read from its chunk items (written by validation), else found by
a scan of the state table for the batch item.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
from boto3.dynamodb.conditions import Attr, Key

from batchgate import aws, ids
from batchgate.adapters.batch_store import batch_sk, chunk_pk, plain, tenant_pk
from batchgate.contract import Prefix
from batchgate_cli.outputs import add_stack_arguments, require, stack_outputs


def find_tenant(table, batch_id: str) -> str | None:
    resp = table.query(KeyConditionExpression=Key("pk").eq(chunk_pk(batch_id)), Limit=1,
                       ProjectionExpression="tenant")
    for item in resp.get("Items", []):
        if item.get("tenant"):
            return str(item["tenant"])
    kwargs: dict[str, Any] = {"FilterExpression": Attr("sk").eq(batch_sk(batch_id)), "ProjectionExpression": "pk"}
    while True:
        resp = table.scan(**kwargs)
        for item in resp.get("Items", []):
            return str(item["pk"]).removeprefix("T#")
        if "LastEvaluatedKey" not in resp:
            return None
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def chunk_items(table, batch_id: str) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(chunk_pk(batch_id)), "ConsistentRead": True}
    items: list[dict[str, Any]] = []
    while True:
        resp = table.query(**kwargs)
        items.extend(plain(i) for i in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return sorted(items, key=lambda c: c.get("n", 0))
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def segment_keys(bucket: str, batch_id: str) -> dict[int, list[str]]:
    """Commit records (`.seg.json`) under work/<batch>/<chunk>/, by chunk."""
    out: dict[int, list[str]] = {}
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{Prefix.WORK}{batch_id}/"):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if len(parts) == 4 and parts[3].endswith(".seg.json") and parts[2].isdigit():
                out.setdefault(int(parts[2]), []).append(parts[3].removesuffix(".seg.json"))
    return out


def workflow_position(state_machine_arn: str, batch_id: str) -> dict[str, Any]:
    """The execution named after the batch: its status and the latest state it entered."""
    sfn = aws.client("stepfunctions")
    arn = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + batch_id
    try:
        described = sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return {"execution_arn": arn, "status": "NOT_STARTED", "state": None}
    history = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=100)["events"]
    history.sort(key=lambda e: e["id"], reverse=True)  # newest first (moto ignores reverseOrder)
    entered = next((e for e in history if "stateEnteredEventDetails" in e), None)
    last = history[0] if history else None
    return {"execution_arn": arn, "status": described["status"],
            "state": entered["stateEnteredEventDetails"]["name"] if entered else None,
            "entered_at": entered["timestamp"].isoformat() if entered else None,
            "last_event": last["type"] if last else None}


def inspect(outputs: dict[str, str], batch_id: str, tenant: str | None) -> dict[str, Any] | None:
    table = aws.resource("dynamodb").Table(require(outputs, "StateTableName"))
    tenant = tenant or find_tenant(table, batch_id)
    if not tenant:
        return None
    item = table.get_item(Key={"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)}, ConsistentRead=True).get("Item")
    if not item:
        return None
    batch = plain(item)
    now = time.time()
    segments = segment_keys(require(outputs, "BucketName"), batch_id)
    chunks = [{
        "n": c.get("n"), "lines": [c.get("first_line"), c.get("end_line")], "next_line": c.get("next_line"),
        "state": c.get("state"), "segments": c.get("segments"), "segment_objects": segments.get(c.get("n", -1), []),
        "lease_owner": c.get("lease_owner"),
        "lease_seconds_left": round(c["lease_until"] - now, 1) if c.get("lease_until") else None,
    } for c in chunk_items(table, batch_id)]
    keep = ("id", "tenant", "status", "model", "endpoint", "created_at", "expires_at", "in_progress_at",
            "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "total",
            "completed", "failed", "chunk_count", "chunks_done", "output_file_id", "error_file_id",
            "input_tokens", "output_tokens", "total_tokens")
    workflow = workflow_position(require(outputs, "StateMachineArn"), batch_id)
    # The token stays on the item once used: the workflow waits on it only while its execution runs.
    waiting = bool(batch.get("task_token")) and workflow["status"] == "RUNNING"
    return {"batch": {k: batch.get(k) for k in keep}, "waiting_on_token": waiting,
            "errors": len(batch.get("errors") or []), "chunks": chunks, "workflow": workflow}


def _print(report: dict[str, Any]) -> None:
    b, wf = report["batch"], report["workflow"]
    print(f"batch {b['id']}  tenant {b['tenant']}  status {b['status']}  model {b['model'] or '-'}")
    print(f"  lines {b['total']} (completed {b['completed']}, failed {b['failed']}), chunks done "
          f"{b['chunks_done']}/{b['chunk_count'] if b['chunk_count'] is not None else '?'}, "
          f"tokens in {b['input_tokens'] or 0} out {b['output_tokens'] or 0}, errors {report['errors']}")
    print(f"  files: output {b['output_file_id'] or '-'}  error {b['error_file_id'] or '-'}")
    print(f"  workflow: {wf['status']}  at state {wf['state'] or '-'}  (last event {wf.get('last_event') or '-'}; "
          f"waiting on its task token: {'yes' if report['waiting_on_token'] else 'no'})")
    print(f"  {'CHUNK':>5}  {'LINES':<15} {'NEXT':>7}  {'STATE':<6} {'SEGS':>4}  LEASE")
    for c in report["chunks"]:
        lease = (f"{c['lease_owner'][:8]} {c['lease_seconds_left']}s" if c["lease_owner"] and c["lease_seconds_left"]
                 else "-")
        print(f"  {c['n']:>5}  {c['lines'][0]}..{c['lines'][1]:<10} {c['next_line']:>7}  {c['state']:<6} "
              f"{c['segments']:>4}  {lease}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchgate batches inspect",
                                     description="a batch's chunks, leases, segments and workflow position")
    parser.add_argument("batch_id")
    add_stack_arguments(parser)
    parser.add_argument("--tenant", help="the batch's tenant (default: found from its items)")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args(argv)
    if not ids.BATCH_ID.match(args.batch_id):
        print(f"error: {args.batch_id!r} is not a batch id", file=sys.stderr)
        return 2
    report = inspect(stack_outputs(args.stack, args.env), args.batch_id, args.tenant)
    if report is None:
        print(f"error: no batch {args.batch_id}" + (f" for tenant {args.tenant!r}" if args.tenant else ""),
              file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        _print(report)
    return 0
