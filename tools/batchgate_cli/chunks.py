"""`batchgate chunks redrive --stack S [--max N] [--json]`: move dead-lettered chunk messages back to the
chunk queue and report what moved (batch id and chunk of each).

A message is sent to the chunk queue first and deleted from the dead-letter queue after, so a crash in
between leaves a duplicate, never a loss: a duplicate pointer finds its chunk claimed or done (workers are
exactly-once per line). Fix what made the chunks fail first (the worker's logs; runbook), or they return.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from batchgate import aws
from batchgate_cli.outputs import add_stack_arguments, require, stack_outputs

RECEIVE_BATCH = 10   # SQS's maximum per ReceiveMessage / SendMessageBatch / DeleteMessageBatch
HIDE_SECONDS = 120   # received messages stay hidden this long while they are moved


def _pointer(body: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return {k: value.get(k) for k in ("batch_id", "tenant", "chunk")} if isinstance(value, dict) else {}


def redrive(dlq_url: str, queue_url: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Move up to `limit` messages (all, when None); returns one entry per moved message."""
    sqs = aws.client("sqs")
    moved: list[dict[str, Any]] = []
    while limit is None or len(moved) < limit:
        want = RECEIVE_BATCH if limit is None else min(RECEIVE_BATCH, limit - len(moved))
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=want, WaitTimeSeconds=1,
                                       VisibilityTimeout=HIDE_SECONDS).get("Messages", [])
        if not messages:
            break
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(messages)])
        ok = {int(e["Id"]) for e in sent.get("Successful", [])}
        for failure in sent.get("Failed", []):
            print(f"warning: message {messages[int(failure['Id'])]['MessageId']} not moved "
                  f"({failure.get('Code')}: {failure.get('Message')}); it stays in the dead-letter queue",
                  file=sys.stderr)
        done = [messages[i] for i in sorted(ok)]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        moved.extend({"message_id": m["MessageId"], **_pointer(m["Body"])} for m in done)
        if len(done) < len(messages):
            break  # sending fails: stop rather than spin on the same messages
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchgate chunks", description="chunk queue operations")
    sub = parser.add_subparsers(dest="chunks_command", required=True)
    rd = sub.add_parser("redrive", help="move dead-lettered chunk messages back to the chunk queue")
    add_stack_arguments(rd)
    rd.add_argument("--max", type=int, help="move at most this many messages")
    rd.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args(argv)
    outputs = stack_outputs(args.stack, args.env)
    moved = redrive(require(outputs, "ChunkDeadLetterQueueUrl"), require(outputs, "ChunkQueueUrl"), args.max)
    if args.json:
        print(orjson.dumps({"moved": len(moved), "messages": moved}).decode())
        return 0
    for m in moved:
        print(f"moved {m.get('batch_id')} chunk {m.get('chunk')} (tenant {m.get('tenant')}, "
              f"message {m['message_id']})")
    print(f"{len(moved)} chunk message(s) moved back to the chunk queue")
    return 0
