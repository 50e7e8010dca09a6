"""`batchgate keys create|list|revoke`: manage the API keys of a deployed stack (or of local mode).

The keys table is found from `--table`, else $BATCHGATE_KEYS_TABLE, else the `KeysTableName` output
of the stateful stack (`--stack`, default `batchgate-<env>-stateful`).
"""
from __future__ import annotations

import argparse
import os
import sys

import orjson

from batchgate import aws
from batchgate.adapters.key_store import KeyStore
from batchgate.domain import keys


def create_key(table_name: str, tenant: str) -> str:
    """Store a new key for `tenant` and return it: the only time the key itself exists in clear."""
    keys.check_tenant(tenant)
    new = keys.generate_key()
    KeyStore(table_name).put(new.key_hash, tenant, new.key_id)
    return new.key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--table", help="keys table name (default: $BATCHGATE_KEYS_TABLE or the stack output)")
    where.add_argument("--env", default="dev", help="environment whose stack to read (default: dev)")
    where.add_argument("--stack", help="stateful stack name (default: batchgate-<env>-stateful)")
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", parents=[where], help="create a key for a tenant and print it once")
    create.add_argument("--tenant", required=True)
    ls = sub.add_parser("list", parents=[where], help="list keys (key_id, tenant, created_at, revoked)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = sub.add_parser("revoke", parents=[where], help="revoke a key by its key_id")
    revoke.add_argument("key_id")


def resolve_table(args: argparse.Namespace) -> str:
    if args.table:
        return args.table
    if os.environ.get("BATCHGATE_KEYS_TABLE"):
        return os.environ["BATCHGATE_KEYS_TABLE"]
    stack = args.stack or f"batchgate-{args.env}-stateful"
    try:
        described = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as exc:
        raise SystemExit(f"error: cannot read stack {stack!r} ({exc}); pass --table NAME") from None
    for output in described.get("Outputs", []):
        if output["OutputKey"] == "KeysTableName":
            return output["OutputValue"]
    raise SystemExit(f"error: stack {stack!r} has no KeysTableName output; pass --table NAME")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchgate keys", description="create, list and revoke API keys")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    table = resolve_table(args)
    store = KeyStore(table)
    if args.keys_command == "create":
        try:
            key = create_key(table, args.tenant)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(key)
        print(f"key_id {keys.key_id_for(key)} for tenant {args.tenant!r}. The key is shown only this once: "
              "store it now.", file=sys.stderr)
        return 0
    if args.keys_command == "list":
        rows = store.list()
        if args.json:
            for row in rows:
                print(orjson.dumps(row).decode())
            return 0
        print(f"{'KEY_ID':<26} {'TENANT':<24} {'CREATED_AT':<12} REVOKED")
        for row in rows:
            print(f"{row['key_id'] or '':<26} {row['tenant'] or '':<24} {row['created_at'] or '':<12} "
                  f"{'yes' if row['revoked'] else 'no'}")
        return 0
    revoked = store.revoke(args.key_id)
    if revoked is None:
        print(f"error: no key with key_id {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {revoked['key_id']} (tenant {revoked['tenant']!r})")
    return 0
