"""`batchgate batches list|show|watch|cancel|inspect`: look at and steer batches from a terminal.

`watch` follows a batch like `batchgate run --batch ID --no-download` (same progress display, same exit
codes). `inspect` is another module's (batchgate_cli.inspect) and is forwarded to it.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import sys
from typing import Any

from batchgate_cli import client as common
from batchgate_cli import tables


def parser() -> argparse.ArgumentParser:
    conn = common.connection_options()
    p = argparse.ArgumentParser(prog="batchgate batches", description="list, show, watch and cancel batches")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", parents=[conn], help="the newest batches, as a table")
    ls.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    ls.add_argument("--after", metavar="ID", help="start after this batch id (the next page)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    show = sub.add_parser("show", parents=[conn], help="one batch: status, counts, files, errors")
    show.add_argument("batch_id")
    show.add_argument("--json", action="store_true", help="the batch object as JSON")
    sub.add_parser("watch", add_help=False, help="follow a batch until it ends (batchgate run --batch ID "
                                                 "--no-download; see `batches watch -h`)")
    cancel = sub.add_parser("cancel", parents=[conn], help="cancel a batch")
    cancel.add_argument("batch_id")
    cancel.add_argument("--wait", action="store_true", help="wait until it is cancelled (or ended otherwise)")
    cancel.add_argument("--json", action="store_true", help="the batch object as JSON")
    sub.add_parser("inspect", add_help=False, help="a batch's internals (see `batches inspect -h`)")
    return p


def _counts(b: Any) -> tuple[str, str]:
    c = b.request_counts
    if c is None:
        return "", ""
    return f"{c.completed}/{c.total}", str(c.failed)


def _metadata(b: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in (b.metadata or {}).items())


def _list(client: Any, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise common.UsageError("--limit must be at least 1")
    page = client.batches.list(limit=min(args.limit, 100), **({"after": args.after} if args.after else {}))
    batches = list(itertools.islice(page, args.limit))  # the SDK follows `after` page by page
    if args.json:
        for b in batches:
            tables.print_json(b)
        return common.EXIT_OK
    tables.print_table(["ID", "STATUS", "ENDPOINT", "DONE", "FAILED", "CREATED", "METADATA"],
                       ([b.id, b.status, b.endpoint, *_counts(b), common.when(b.created_at), _metadata(b)]
                        for b in batches), empty="no batches")
    return common.EXIT_OK


def show_batch(b: Any) -> None:
    done, failed = _counts(b)
    stamps = [(name, common.when(getattr(b, f"{name}_at", None))) for name in
              ("created", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled", "expired",
               "expires")]
    usage = b.usage
    tables.print_pairs([
        ("id", b.id), ("status", b.status), ("endpoint", b.endpoint), ("model", getattr(b, "model", None)),
        ("completion window", b.completion_window), ("done / total", done), ("failed", failed),
        ("input file", b.input_file_id), ("output file", b.output_file_id), ("error file", b.error_file_id),
        *stamps, ("metadata", _metadata(b)),
        ("tokens", f"in {usage.input_tokens:,} / out {usage.output_tokens:,} / total {usage.total_tokens:,}"
         if usage else None),
    ])
    errors = b.errors.data if b.errors and b.errors.data else []
    if errors:
        print(f"\nerrors ({len(errors)}):")
        tables.print_table(["LINE", "CODE", "MESSAGE"], ([e.line, e.code, e.message] for e in errors))


def _show(client: Any, args: argparse.Namespace) -> int:
    b = client.batches.retrieve(args.batch_id)
    if args.json:
        tables.print_json(b)
    else:
        show_batch(b)
    return common.EXIT_OK


def _cancel(client: Any, args: argparse.Namespace) -> int:
    b = client.batches.cancel(args.batch_id)
    if args.wait:
        from batchgate_cli.run import main as run_main
        rest = ["--batch", b.id, "--no-download", "--on-interrupt", "detach", "--quiet"]
        code = run_main(rest + _connection_argv(args))
        b = client.batches.retrieve(b.id)
        if code == common.EXIT_DETACHED:
            return code
    if args.json:
        tables.print_json(b)
    else:
        done, failed = _counts(b)
        print(f"{b.id} {b.status}" + (f" ({done} done, {failed} failed)" if done else ""))
    return common.EXIT_OK


def _connection_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--timeout", str(args.timeout)]
    if args.base_url:
        argv += ["--base-url", args.base_url]
    if args.api_key:
        argv += ["--api-key", args.api_key]
    return argv


def _inspect(rest: list[str]) -> int:
    try:
        module = importlib.import_module("batchgate_cli.inspect")
    except ModuleNotFoundError as exc:
        if exc.name != "batchgate_cli.inspect":
            raise
        print("error: `batchgate batches inspect` is not available in this installation "
              "(module batchgate_cli.inspect is missing)", file=sys.stderr)
        return common.EXIT_USAGE
    return int(module.main(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "inspect":
        return _inspect(argv[1:])
    if argv and argv[0] == "watch":
        from batchgate_cli.run import main as run_main
        rest = argv[1:]
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: batchgate batches watch BATCH_ID [batchgate run options: --json, -q, --poll-interval, "
                  "--base-url, --api-key, ...]\nFollows the batch until it ends, without downloading its files; "
                  "exit codes as `batchgate run`.", file=sys.stderr if rest == [] else sys.stdout)
            return common.EXIT_USAGE if not rest else common.EXIT_OK
        return run_main(["--batch", rest[0], "--no-download", *rest[1:]])
    args = parser().parse_args(argv)

    def body() -> int:
        client = common.make_client(args)
        action = {"list": _list, "show": _show, "cancel": _cancel}[args.action]
        return action(client, args)

    return common.run_command(body)
