"""`batchgate files list|upload|download|delete`: the Files API from a terminal.

`upload` sends files above the direct limit (4 MiB on Batchgate) through the Uploads API in parts, like
`batchgate run`; `download` streams to a file (or stdout) and follows the service's redirect for large files.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import openai

from batchgate_cli import client as common
from batchgate_cli import tables


def _size(value: str) -> int:
    from batchgate_cli.run import _size as parse
    return parse(value)


def parser() -> argparse.ArgumentParser:
    conn = common.connection_options()
    p = argparse.ArgumentParser(prog="batchgate files", description="list, upload, download and delete files")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", parents=[conn], help="files, newest first, as a table")
    ls.add_argument("--purpose", help="only files with this purpose (batch, batch_output, ...)")
    ls.add_argument("--limit", type=int, default=100, help="how many (default 100)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    up = sub.add_parser("upload", parents=[conn], help="upload a file; prints its id")
    up.add_argument("path", type=Path)
    up.add_argument("--purpose", default="batch", help="file purpose (default batch)")
    up.add_argument("--json", action="store_true", help="the file object as JSON")
    up.add_argument("--direct-limit", type=_size, default=common.DIRECT_UPLOAD_LIMIT, metavar="SIZE",
                    help="use the Uploads API above this size (default 4MiB)")
    up.add_argument("--part-size", type=_size, default=common.PART_SIZE, metavar="SIZE",
                    help="Uploads API part size (default 4MiB)")
    down = sub.add_parser("download", parents=[conn], help="download a file's content")
    down.add_argument("file_id")
    down.add_argument("-o", "--output", type=Path, help="where to write it (default: stdout)")
    rm = sub.add_parser("delete", parents=[conn], help="delete files")
    rm.add_argument("file_ids", nargs="+", metavar="file_id")
    return p


def _list(client: Any, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise common.UsageError("--limit must be at least 1")
    kw: dict[str, Any] = {"limit": min(args.limit, 10_000)}
    if args.purpose:
        kw["purpose"] = args.purpose
    files = list(itertools.islice(client.files.list(**kw), args.limit))
    if args.json:
        for f in files:
            tables.print_json(f)
        return common.EXIT_OK
    tables.print_table(["ID", "PURPOSE", "SIZE", "CREATED", "FILENAME", "STATUS"],
                       ([f.id, f.purpose, common.size_text(f.bytes), common.when(f.created_at), f.filename, f.status]
                        for f in files), empty="no files")
    return common.EXIT_OK


def _upload(client: Any, args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.is_file():
        raise common.UsageError(f"{path}: no such file")
    modes: list[str] = []
    f = common.upload_file(client, path, purpose=args.purpose, direct_limit=args.direct_limit,
                           part_size=args.part_size, on_mode=lambda mode, parts: modes.append(mode))
    if args.json:
        tables.print_json(f)
    else:
        print(f.id)
        how = "through the Uploads API" if modes[-1:] == ["uploads"] else "directly"
        print(f"uploaded {path} ({common.size_text(f.bytes)}) {how} as {f.id}", file=sys.stderr)
    return common.EXIT_OK


def _download(client: Any, args: argparse.Namespace) -> int:
    written = common.download_file(client, args.file_id, args.output)
    if args.output is not None:
        print(f"wrote {args.output} ({common.size_text(written)})", file=sys.stderr)
    return common.EXIT_OK


def _delete(client: Any, args: argparse.Namespace) -> int:
    code = common.EXIT_OK
    for file_id in args.file_ids:
        try:
            client.files.delete(file_id)
        except openai.APIStatusError as exc:
            print(f"error: {file_id}: {common.api_error_text(exc)}", file=sys.stderr)
            code = common.EXIT_FAILED
            continue
        print(f"deleted {file_id}")
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        client = common.make_client(args)
        action = {"list": _list, "upload": _upload, "download": _download, "delete": _delete}[args.action]
        return action(client, args)

    return common.run_command(body)
