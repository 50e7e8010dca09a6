"""`batchgate webhooks create|list|delete|rotate-secret|redrive`: a tenant's signed webhook endpoints.

Resources come from the deployment's stack outputs (`--stack`/`--env`, as the other operations commands) or from
$BATCHGATE_WEBHOOKS_TABLE / $BATCHGATE_WEBHOOK_QUEUE_URL / $BATCHGATE_WEBHOOK_DLQ_URL (local mode sets them).
A signing secret is printed once, by `create` and `rotate-secret`; nothing else ever shows it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from batchgate import aws
from batchgate.adapters.webhook_store import WebhookStore
from batchgate.contract import Env
from batchgate.domain import webhooks
from batchgate.models.webhooks import WEBHOOK_EVENT_TYPES, WebhookDeliveryMessage
from batchgate_cli import outputs

MAX_GRACE_SECONDS = 30 * 86400   # a rotation ends; an old secret does not sign for ever

_OUTPUTS = {"table": ("WebhooksTableName", Env.WEBHOOKS_TABLE),
            "queue": ("WebhookQueueUrl", Env.WEBHOOK_QUEUE_URL),
            "dlq": ("WebhookDeadLetterQueueUrl", Env.WEBHOOK_DLQ_URL)}


def _grace(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not 0 <= seconds <= MAX_GRACE_SECONDS:
        raise argparse.ArgumentTypeError(f"a grace period is 0 to {MAX_GRACE_SECONDS} seconds (30 days)")
    return seconds


def _local(args: argparse.Namespace) -> bool:
    """The local environment (`--env local`, or `--stack` naming its stacks): http://127.0.0.1 endpoints."""
    return outputs.stack_names(args.stack, args.env)[0] == outputs.stack_names(None, "local")[0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchgate webhooks", description=__doc__.split("\n")[0])
    where = argparse.ArgumentParser(add_help=False)
    outputs.add_stack_arguments(where)
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", parents=[where], help="add an endpoint for a tenant; prints its secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--url", required=True, help="https:// URL (http://127.0.0.1 only in the local environment)")
    create.add_argument("--events", nargs="+", choices=WEBHOOK_EVENT_TYPES, default=list(WEBHOOK_EVENT_TYPES),
                        help="event types to send (default: all four)")
    create.add_argument("--json", action="store_true", help="print the endpoint and its secret as JSON")
    ls = sub.add_parser("list", parents=[where], help="list endpoints (never their secrets)")
    ls.add_argument("--tenant", help="only this tenant's")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    delete = sub.add_parser("delete", parents=[where], help="delete an endpoint (its pending deliveries are dropped)")
    delete.add_argument("--tenant", required=True)
    delete.add_argument("endpoint_id")
    rotate = sub.add_parser("rotate-secret", parents=[where],
                            help="new secret (printed once); the old one keeps signing for --grace-seconds")
    rotate.add_argument("--tenant", required=True)
    rotate.add_argument("endpoint_id")
    rotate.add_argument("--grace-seconds", type=_grace, default=86400,
                        help="how long deliveries still carry a signature by the old secret (default 86400, "
                             "at most 30 days)")
    redrive = sub.add_parser("redrive", parents=[where],
                             help="move dead-lettered deliveries back to the webhook queue (a fresh retry schedule)")
    redrive.add_argument("--max", type=int, default=0, help="move at most this many (default: all)")
    return parser


def _resolve(args: argparse.Namespace, name: str) -> str:
    output, env = _OUTPUTS[name]
    if os.environ.get(env):
        return os.environ[env]
    return outputs.require(outputs.stack_outputs(args.stack, args.env), output)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.action == "redrive":
        moved = redrive(_resolve(args, "dlq"), _resolve(args, "queue"), limit=args.max)
        print(f"moved {moved} dead-lettered deliveries back to the webhook queue")
        return 0
    store = WebhookStore(_resolve(args, "table"))
    if args.action == "create":
        record = webhooks.new_endpoint(args.tenant, args.url, args.events, now=int(time.time()),
                                       allow_loopback=_local(args))
        store.put(record)
        if args.json:
            print(orjson.dumps({**record.public(), "secret": record.secret}).decode())
        else:
            print(record.secret)
        print(f"endpoint {record.id} for tenant {record.tenant!r} -> {record.url} ({', '.join(record.events)}). "
              "The secret is shown only this once: give it to the receiver now.", file=sys.stderr)
        return 0
    if args.action == "list":
        records = store.list(args.tenant) if args.tenant else store.list_all()
        for record in records:
            row = record.public()
            print(orjson.dumps(row).decode() if args.json else
                  f"{row['id']}  {row['tenant']}  {row['url']}  {','.join(row['events'])}"
                  f"{'  (rotating)' if row['rotating'] else ''}")
        return 0
    if args.action == "delete":
        if not store.delete(args.tenant, args.endpoint_id):
            print(f"error: tenant {args.tenant!r} has no endpoint {args.endpoint_id!r}", file=sys.stderr)
            return 1
        print(f"deleted {args.endpoint_id}")
        return 0
    # rotate-secret
    secret = webhooks.generate_secret()
    if not store.rotate(args.tenant, args.endpoint_id, secret, int(time.time()) + args.grace_seconds):
        print(f"error: tenant {args.tenant!r} has no endpoint {args.endpoint_id!r}", file=sys.stderr)
        return 1
    print(secret)
    print(f"new secret for {args.endpoint_id}; deliveries carry signatures by both secrets for "
          f"{args.grace_seconds} s. Shown only this once.", file=sys.stderr)
    return 0


def redrive(dead_letter_url: str, queue_url: str, limit: int = 0) -> int:
    """Move dead-lettered messages back: a delivery starts a fresh schedule (same webhook-id and body);
    anything else (an event whose fan-out kept failing) goes back as it was. Sent before deleted, so a
    crash in between repeats a delivery rather than losing it."""
    sqs = aws.client("sqs")
    moved = 0
    while not limit or moved < limit:
        batch = sqs.receive_message(QueueUrl=dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    VisibilityTimeout=60).get("Messages", [])
        if not batch:
            return moved
        for m in batch[:limit - moved] if limit else batch:
            body = m["Body"]
            try:
                message = WebhookDeliveryMessage.model_validate_json(body)
                fresh = {"attempts": 0, "not_before": 0, "window_ends_at": 0}   # a new schedule and window
                body = message.model_copy(update=fresh).model_dump_json()
            except ValueError:
                pass
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return moved
