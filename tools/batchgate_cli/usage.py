"""`batchgate usage --stack S [--tenant T] --since DATE [--until DATE] [--json]`: tokens and lines per
tenant and model, for chargeback, from the batch items the service keeps.

Batch items are `pk = T#<tenant>`, `sk = BATCH#<id>` in the state table: one tenant is a Query of its
partition; all tenants a Scan filtered to batch items (a chargeback report is rare, and the table needs
no index for it). A batch counts in the period it was created in; its usage is what its lines used so
far (final once the batch ended).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterator
from typing import Any

import orjson
from boto3.dynamodb.conditions import Attr, Key

from batchgate import aws
from batchgate.adapters.batch_store import plain, tenant_pk
from batchgate_cli.outputs import add_stack_arguments, require, stack_outputs

FIELDS = ("tenant", "model", "created_at", "total", "completed", "failed", "input_tokens", "cached_tokens",
          "output_tokens", "reasoning_tokens", "total_tokens")
SUMS = ("batches", "lines", "completed", "failed", "input_tokens", "cached_tokens", "output_tokens",
        "reasoning_tokens", "total_tokens")


def parse_time(value: str) -> int:
    """Unix seconds from a date (2026-12-01, midnight UTC), an ISO time, or a number of seconds."""
    if value.isdigit():
        return int(value)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO time)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def batch_items(table_name: str, tenant: str | None, since: int, until: int | None) -> Iterator[dict[str, Any]]:
    table = aws.resource("dynamodb").Table(table_name)
    created = Attr("created_at").gte(since)
    if until is not None:
        created = created & Attr("created_at").lt(until)
    names = {f"#{f}": f for f in FIELDS}
    kwargs: dict[str, Any] = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
    if tenant:
        kwargs.update(KeyConditionExpression=Key("pk").eq(tenant_pk(tenant)) & Key("sk").begins_with("BATCH#"),
                      FilterExpression=created)
        call = table.query
    else:
        kwargs.update(FilterExpression=Attr("sk").begins_with("BATCH#") & created)
        call = table.scan
    while True:
        resp = call(**kwargs)
        yield from (plain(item) for item in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def summarize(items: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        key = (str(item.get("tenant") or ""), str(item.get("model") or "-"))
        row = rows.setdefault(key, {"tenant": key[0], "model": key[1], **{s: 0 for s in SUMS}})
        row["batches"] += 1
        row["lines"] += int(item.get("total") or 0)
        for name in SUMS[2:]:
            row[name] += int(item.get(name) or 0)
    return [rows[k] for k in sorted(rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchgate usage",
                                     description="tokens and lines per tenant and model, for chargeback")
    add_stack_arguments(parser)
    parser.add_argument("--table", help="state table name (default: the stack's StateTableName output)")
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--since", required=True, type=parse_time, help="batches created at or after (UTC date)")
    parser.add_argument("--until", type=parse_time, help="... and before this (default: now)")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args(argv)
    table = args.table or require(stack_outputs(args.stack, args.env), "StateTableName")
    rows = summarize(batch_items(table, args.tenant, args.since, args.until))
    totals = {s: sum(r[s] for r in rows) for s in SUMS}
    if args.json:
        sys.stdout.write(orjson.dumps({"since": args.since, "until": args.until, "rows": rows,
                                       "totals": totals}).decode() + "\n")
        return 0
    head = ("TENANT", "MODEL", "BATCHES", "LINES", "COMPLETED", "FAILED", "INPUT_TOKENS", "CACHED",
            "OUTPUT_TOKENS", "REASONING", "TOTAL_TOKENS")
    table_rows = [[r["tenant"], r["model"], *(str(r[s]) for s in SUMS)] for r in rows]
    table_rows.append(["TOTAL", "", *(str(totals[s]) for s in SUMS)])
    widths = [max(len(h), *(len(r[i]) for r in table_rows)) for i, h in enumerate(head)]
    for line in [list(head), *table_rows]:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    return 0
