"""`batchgate run`: a JSONL file in, results out. Uploads the file, creates the batch, follows it with a live
progress display, downloads the output and error files, and exits 0 only if every line succeeded.

Exit codes: 0 every line succeeded; 1 some lines failed, or the batch failed / expired / was cancelled;
2 usage or input errors (missing file, invalid JSONL, unknown batch); 130 detached with Ctrl-C (the batch
keeps running: `batchgate run --batch ID` reattaches).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai

from batchgate_cli import client as common
from batchgate_cli.progress import Reporter, make_reporter

ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
             "/v1/images/generations", "/v1/images/edits", "/v1/videos")
MAX_SHOWN_ERRORS = 20

DESCRIPTION = """\
Run a batch from a JSONL file: upload it (through the Uploads API in parts when it is larger than the
direct upload limit), create the batch, show its progress until it ends, then download the output and
error files.

The output file keeps the service's line order: OpenAI writes lines in completion order, so match them
to requests by custom_id (Batchgate happens to keep input order). The endpoint is inferred from the
lines' "url" when --endpoint is not given.

Exit codes: 0 every line succeeded; 1 some lines failed, or the batch failed, expired or was cancelled;
2 usage or input errors; 130 detached with Ctrl-C (the batch keeps running).
Ctrl-C asks whether to cancel the batch or detach from it (no terminal on stdin: detach)."""


class Detached(Exception):
    """The user left the batch running (Ctrl-C, then detach)."""


def _size(value: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*(b|k|kb|kib|m|mb|mib)?\s*", value, re.IGNORECASE)
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size like 4MiB or 65536, got {value!r}")
    unit = (m.group(2) or "b").lower()
    factor = {"b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024 ** 2, "mb": 1000 ** 2, "mib": 1024 ** 2}[unit]
    return int(m.group(1)) * factor


def _pair(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batchgate run", description=DESCRIPTION, parents=[common.connection_options()],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", type=Path, help="JSONL batch input (one request per line)")
    p.add_argument("--batch", metavar="ID", help="reattach to an existing batch instead of starting one")
    p.add_argument("-o", "--output", type=Path, help="where to write the output file "
                   "(default: INPUT_STEM.results.jsonl next to the input, or BATCH_ID.results.jsonl)")
    p.add_argument("--errors", type=Path, help="where to write the error file, if the batch has one "
                   "(default: INPUT_STEM.errors.jsonl, or BATCH_ID.errors.jsonl)")
    p.add_argument("--endpoint", choices=ENDPOINTS, metavar="URL",
                   help=f"batch endpoint, one of {', '.join(ENDPOINTS)} (default: the lines' url)")
    p.add_argument("--window", default="24h", help="completion window (default 24h, the only one OpenAI accepts)")
    p.add_argument("--metadata", action="append", type=_pair, default=[], metavar="KEY=VALUE",
                   help="batch metadata (repeatable)")
    p.add_argument("--no-download", action="store_true", help="follow the batch but do not download its files")
    p.add_argument("--no-validate", action="store_true",
                   help="upload without checking the lines here first (the service still validates them)")
    out = p.add_argument_group("output")
    mode = out.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="machine-readable progress on stdout: one JSON object "
                      "per line with an `event`: upload, uploaded, created, progress (every poll), note, "
                      "downloaded, and last done (with exit_code), detached or interrupted")
    mode.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    out.add_argument("--on-interrupt", choices=("ask", "cancel", "detach"), default="ask",
                     help="what Ctrl-C does: ask (default; detach when stdin has no answer), cancel the batch, "
                          "or detach from it")
    tune = p.add_argument_group("tuning")
    tune.add_argument("--poll-interval", type=float, default=1.0, metavar="S",
                      help="seconds between status polls at first (default 1); it grows to --poll-max while "
                           "nothing changes")
    tune.add_argument("--poll-max", type=float, default=None, metavar="S",
                      help="longest poll interval (default 10; 2 for a loopback --base-url such as local mode)")
    tune.add_argument("--direct-limit", type=_size, default=common.DIRECT_UPLOAD_LIMIT, metavar="SIZE",
                      help="upload larger files through the Uploads API (default 4MiB: Batchgate's POST /v1/files "
                           "limit)")
    tune.add_argument("--part-size", type=_size, default=common.PART_SIZE, metavar="SIZE",
                      help="Uploads API part size (default 4MiB: Batchgate's largest part)")
    return p


# -- the input file ---------------------------------------------------------------------------------------

@dataclass
class InputCheck:
    lines: int = 0
    custom_ids: list[str] = field(default_factory=list)
    urls: dict[str, int] = field(default_factory=dict)   # url -> first line using it
    problems: list[str] = field(default_factory=list)


def check_input(path: Path, *, limit: int = MAX_SHOWN_ERRORS) -> InputCheck:
    """Read a batch input file line by line: JSON objects with a unique string custom_id, method POST, a url
    and an object body. Problems are 'line N: ...' strings (at most `limit`, then a count)."""
    check, seen, more = InputCheck(), set[str](), 0

    def problem(text: str) -> None:
        nonlocal more
        if len(check.problems) < limit:
            check.problems.append(text)
        else:
            more += 1

    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            check.lines = number
            if not raw.strip():
                problem(f"line {number}: empty line")
                continue
            try:
                line = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                problem(f"line {number}: not valid JSON ({exc})")
                continue
            if not isinstance(line, dict):
                problem(f"line {number}: not a JSON object")
                continue
            cid = line.get("custom_id")
            if not isinstance(cid, str) or not cid:
                problem(f"line {number}: custom_id must be a non-empty string")
            elif cid in seen:
                problem(f"line {number}: duplicate custom_id {cid!r}")
            else:
                seen.add(cid)
                check.custom_ids.append(cid)
            if line.get("method") != "POST":
                problem(f"line {number}: method must be \"POST\"")
            url = line.get("url")
            if not isinstance(url, str) or not url:
                problem(f"line {number}: url must be a string like \"/v1/chat/completions\"")
            else:
                check.urls.setdefault(url, number)
            if not isinstance(line.get("body"), dict):
                problem(f"line {number}: body must be a JSON object")
    if check.lines == 0:
        problem("the file is empty")
    if more:
        check.problems.append(f"... and {more} more")
    return check


def infer_endpoint(urls: dict[str, int], given: str | None = None) -> str:
    """The batch endpoint: `given`, else the one url every line uses. Raises UsageError when the lines use
    several urls, none, or one that is not `given`."""
    if given:
        wrong = {u: n for u, n in urls.items() if u != given}
        if wrong:
            url, number = min(wrong.items(), key=lambda kv: kv[1])
            raise common.UsageError(f"line {number}: url {url!r} differs from --endpoint {given!r} "
                                    "(a batch has one endpoint)")
        return given
    if not urls:
        raise common.UsageError("cannot infer the endpoint: no line has a url; pass --endpoint")
    if len(urls) > 1:
        listed = ", ".join(f"{u!r} (first on line {n})" for u, n in sorted(urls.items(), key=lambda kv: kv[1]))
        raise common.UsageError(f"the lines use several urls: {listed}; a batch has one endpoint: split the file")
    url = endpoint = next(iter(urls))
    if endpoint not in ENDPOINTS:
        raise common.UsageError(f"line {urls[url]}: url {url!r} is not a batch endpoint "
                                f"({', '.join(ENDPOINTS)})")
    return endpoint


def _first_url(path: Path) -> dict[str, int]:
    """Without validation: the url of the first line that has one (for endpoint inference)."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                url = json.loads(raw).get("url")
            except (ValueError, AttributeError):
                continue
            if isinstance(url, str) and url:
                return {url: number}
    return {}


# -- following a batch ------------------------------------------------------------------------------------

def _ask(args: argparse.Namespace, reporter: Reporter, batch_id: str) -> str:
    """What to do on Ctrl-C: 'cancel', 'detach' or 'resume'."""
    if args.on_interrupt != "ask":
        return str(args.on_interrupt)
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return "detach"
    reporter.pause()
    try:
        print(f"\nBatch {batch_id} is still running: [c]ancel it, [d]etach (it keeps running), or [r]esume "
              "watching? [d] ", end="", file=sys.stderr, flush=True)
        answer = stdin.readline()
    except (KeyboardInterrupt, OSError, ValueError):
        answer = ""
    finally:
        reporter.resume()
    choice = answer.strip().lower()[:1]
    return {"c": "cancel", "r": "resume"}.get(choice, "detach")


def follow(client: openai.OpenAI, batch_id: str, args: argparse.Namespace, reporter: Reporter) -> Any:
    """Poll the batch until it ends; return it. Ctrl-C asks (cancel / detach / resume): detach raises
    Detached; a second Ctrl-C while cancelling detaches."""
    interval, last_key, cancelling = args.poll_interval, None, False
    batch = None
    while True:
        try:
            batch = client.batches.retrieve(batch_id)
            reporter.batch(batch)
            if batch.status in common.TERMINAL:
                return batch
            counts = batch.request_counts
            key = (batch.status, counts and (counts.completed, counts.failed, counts.total))
            interval = args.poll_interval if key != last_key else min(args.poll_max, interval * 1.5)
            last_key = key
            time.sleep(interval)
        except KeyboardInterrupt:
            if cancelling:
                raise Detached() from None
            choice = _ask(args, reporter, batch_id)
            if choice == "detach":
                raise Detached() from None
            if choice == "cancel":
                cancelling = True
                try:
                    client.batches.cancel(batch_id)
                    reporter.note(f"cancelling {batch_id} (Ctrl-C again to detach)")
                except openai.APIStatusError as exc:  # it ended meanwhile (409), or cannot be cancelled
                    reporter.note(f"cannot cancel {batch_id}: {common.api_error_text(exc)}")
            interval, last_key = args.poll_interval, None


def _custom_ids(path: Path) -> list[str]:
    out = []
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                out.append(json.loads(raw).get("custom_id"))
    return out


def finish(client: openai.OpenAI, batch: Any, args: argparse.Namespace, reporter: Reporter,
           expected_ids: list[str] | None, started: float) -> int:
    """Download the batch's files, check them, report; return the exit code."""
    output = args.output or _default_path(args, "results")
    errors = args.errors or _default_path(args, "errors")
    files: dict[str, str] = {}
    got_ids: list[str] = []
    for kind, file_id, dest in (("output", batch.output_file_id, output), ("errors", batch.error_file_id, errors)):
        if not file_id or args.no_download:
            continue
        reporter.download_start(kind, dest)
        common.download_file(client, file_id, dest, on_progress=reporter.download_progress)
        reporter.download_done(kind, dest)
        files[kind] = str(dest)
        got_ids += _custom_ids(dest)
    counts = batch.request_counts
    ok = batch.status == "completed" and counts is not None and counts.failed == 0 and counts.completed == counts.total
    problems = []
    checkable = batch.status == "completed" and expected_ids is not None and not args.no_download
    if checkable and expected_ids is not None and sorted(got_ids) != sorted(expected_ids):
        missing = len(set(expected_ids) - set(got_ids))
        extra = len(set(got_ids) - set(expected_ids))
        problems.append(f"the result files do not match the input's custom_ids ({missing} missing, {extra} "
                        "unexpected)")
        ok = False
    for err in (batch.errors.data if batch.errors and batch.errors.data else [])[:MAX_SHOWN_ERRORS]:
        where = f"line {err.line}: " if err.line else ""
        problems.append(f"{where}{err.message} ({err.code})" if err.code else f"{where}{err.message}")
    if batch.errors and batch.errors.data and len(batch.errors.data) > MAX_SHOWN_ERRORS:
        problems.append(f"... and {len(batch.errors.data) - MAX_SHOWN_ERRORS} more")
    code = common.EXIT_OK if ok else common.EXIT_FAILED
    reporter.done(batch, files=files, problems=problems, exit_code=code, elapsed=time.monotonic() - started)
    return code


def _default_path(args: argparse.Namespace, kind: str) -> Path:
    if args.input is not None:
        stem = args.input.name.removesuffix(".jsonl")
        return args.input.with_name(f"{stem}.{kind}.jsonl")
    return Path(f"{args.batch}.{kind}.jsonl")


def start(client: openai.OpenAI, args: argparse.Namespace, reporter: Reporter) -> tuple[Any, list[str] | None]:
    """Check and upload the input, create the batch; return it and the input's custom_ids (None: unchecked)."""
    path: Path = args.input
    if not path.is_file():
        raise common.UsageError(f"{path}: no such file")
    expected: list[str] | None = None
    if args.no_validate:
        endpoint = args.endpoint or infer_endpoint(_first_url(path))
    else:
        check = check_input(path)
        if check.problems:
            raise common.UsageError(f"{path} is not a valid batch input:\n  " + "\n  ".join(check.problems))
        endpoint = infer_endpoint(check.urls, args.endpoint)
        expected = check.custom_ids
    size = path.stat().st_size
    reporter.upload_start(path, size)
    file = common.upload_file(client, path, direct_limit=args.direct_limit, part_size=args.part_size,
                              on_progress=reporter.upload_progress, on_mode=reporter.upload_mode)
    reporter.upload_done(file)
    batch = client.batches.create(input_file_id=file.id, endpoint=endpoint,  # type: ignore[arg-type]
                                  completion_window=args.window,  # type: ignore[arg-type]
                                  metadata=dict(args.metadata) or None)
    reporter.created(batch)
    return batch, expected


def _loopback(base_url: str | None) -> bool:
    host = urlsplit(base_url or os.environ.get("OPENAI_BASE_URL") or "").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if (args.input is None) == (args.batch is None):
        p.print_usage(sys.stderr)
        print("batchgate run: error: give an input file, or --batch ID to reattach (not both)", file=sys.stderr)
        return common.EXIT_USAGE
    if args.poll_max is None:
        args.poll_max = max(args.poll_interval, 2.0 if _loopback(args.base_url) else 10.0)
    if args.poll_interval <= 0 or args.poll_max < args.poll_interval:
        p.error("--poll-interval must be > 0 and at most --poll-max")
    reporter = make_reporter(args)
    started = time.monotonic()
    batch_id = args.batch

    def body() -> int:
        nonlocal batch_id
        client = common.make_client(args)
        try:
            expected = None
            if args.batch is None:
                batch, expected = start(client, args, reporter)
                batch_id = batch.id
            try:
                batch = follow(client, batch_id, args, reporter)
            except KeyboardInterrupt:  # a Ctrl-C between follow's own handlers: the batch keeps running
                raise Detached() from None
            return finish(client, batch, args, reporter, expected, started)
        except Detached:
            reporter.detached(batch_id, args)
            return common.EXIT_DETACHED
        except KeyboardInterrupt:
            reporter.interrupted(batch_id)
            return common.EXIT_DETACHED

    try:
        return common.run_command(body)
    finally:
        reporter.close()
