"""How `batchgate run` shows what happens: a live rich display on a terminal, timestamped lines when stderr
is not a terminal, JSON lines with --json, nothing but errors with --quiet.

Progress goes to stderr; the final summary to stdout (with --json, everything machine-readable is on stdout).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from batchgate_cli.client import size_text

LINE_PROGRESS_SECONDS = 10.0  # non-TTY: at most one progress line this often (status changes always print)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Rate:
    """Lines per second since the first observation, and the ETA that follows."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.done0 = 0

    def update(self, done: int, total: int) -> tuple[float | None, float | None]:
        now = time.monotonic()
        if self.t0 is None or done < self.done0:
            self.t0, self.done0 = now, done
            return None, None
        elapsed = now - self.t0
        if elapsed <= 0 or done <= self.done0:
            return None, None
        rate = (done - self.done0) / elapsed
        return rate, (max(total - done, 0) / rate if total else None)


def _counts(batch: Any) -> tuple[int, int, int]:
    c = batch.request_counts
    return (c.completed, c.failed, c.total) if c is not None else (0, 0, 0)


def _usage(batch: Any) -> dict[str, int] | None:
    u = getattr(batch, "usage", None)
    if u is None:
        return None
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "total_tokens": u.total_tokens}


def _tokens_text(batch: Any) -> str:
    u = _usage(batch)
    return f"tokens in {u['input_tokens']:,} / out {u['output_tokens']:,}" if u else ""


class Reporter:
    """Quiet: says nothing but what went wrong. The others extend it."""

    def __init__(self) -> None:
        self.rate = Rate()
        self.status: str | None = None
        self.upload_path: Path | None = None
        self.upload_bytes = 0
        self.mode, self.parts = "direct", 1

    def upload_start(self, path: Path, size: int) -> None:
        self.upload_path, self.upload_bytes = path, size

    def upload_mode(self, mode: str, parts: int) -> None:
        self.mode, self.parts = mode, parts

    def upload_progress(self, n: int) -> None:
        pass

    def upload_done(self, file: Any) -> None:
        pass

    def created(self, batch: Any) -> None:
        pass

    def batch(self, batch: Any) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def download_start(self, kind: str, dest: Path) -> None:
        pass

    def download_progress(self, written: int, total: int | None) -> None:
        pass

    def download_done(self, kind: str, dest: Path) -> None:
        pass

    def done(self, batch: Any, *, files: dict[str, str], problems: list[str], exit_code: int,
             elapsed: float) -> None:
        if exit_code:
            completed, failed, total = _counts(batch)
            print(f"batch {batch.id} {batch.status}: {completed}/{total} succeeded, {failed} failed", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)

    def detached(self, batch_id: str | None, args: argparse.Namespace) -> None:
        if batch_id:
            print(f"detached: batch {batch_id} keeps running; reattach with: batchgate run --batch {batch_id}",
                  file=sys.stderr)

    def interrupted(self, batch_id: str | None) -> None:
        print("interrupted" + (f" (batch {batch_id})" if batch_id else " before a batch was created"),
              file=sys.stderr)

    def close(self) -> None:
        pass

    # shared wording
    def _summary(self, batch: Any, files: dict[str, str], elapsed: float) -> list[str]:
        completed, failed, total = _counts(batch)
        lines = [f"batch {batch.id} {batch.status} in {_duration(elapsed)}: {completed}/{total} succeeded, "
                 f"{failed} failed"]
        if tokens := _tokens_text(batch):
            lines.append(tokens)
        lines += [f"{kind} -> {path}" for kind, path in files.items()]
        return lines

    def _reattach(self, batch_id: str, args: argparse.Namespace) -> str:
        extra = "".join(f" {flag} {value}" for flag, value in (("-o", args.output), ("--errors", args.errors)) if value)
        return f"batchgate run --batch {batch_id}{extra}"


class LinesReporter(Reporter):
    """Not a terminal: one timestamped line per event on stderr; progress at most every 10 s."""

    def __init__(self) -> None:
        super().__init__()
        self.last_line = 0.0
        self.last_counts: tuple[int, int, int] | None = None

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    def upload_mode(self, mode: str, parts: int) -> None:
        super().upload_mode(mode, parts)
        how = "direct" if mode == "direct" else f"through the Uploads API in {parts} parts"
        self._say(f"uploading {self.upload_path} ({size_text(self.upload_bytes)}) {how}")

    def upload_done(self, file: Any) -> None:
        self._say(f"uploaded {file.id}")

    def created(self, batch: Any) -> None:
        self._say(f"created {batch.id} ({batch.endpoint})")

    def batch(self, batch: Any) -> None:
        completed, failed, total = _counts(batch)
        rate, eta = self.rate.update(completed + failed, total)
        now = time.monotonic()
        changed = batch.status != self.status
        moved = (completed, failed, total) != self.last_counts and now - self.last_line >= LINE_PROGRESS_SECONDS
        if changed or moved:
            extra = f", {rate:.1f} lines/s, ETA {_duration(eta)}" if rate and batch.status == "in_progress" else ""
            self._say(f"{batch.id} {batch.status}: {completed}/{total} done, {failed} failed{extra}")
            self.last_line, self.last_counts, self.status = now, (completed, failed, total), batch.status

    def note(self, text: str) -> None:
        self._say(text)

    def download_done(self, kind: str, dest: Path) -> None:
        self._say(f"wrote {kind} file {dest}")

    def done(self, batch: Any, *, files: dict[str, str], problems: list[str], exit_code: int,
             elapsed: float) -> None:
        for line in self._summary(batch, files, elapsed):
            print(line, flush=True)
        for line in problems:
            print(f"  {line}", file=sys.stderr, flush=True)

    def detached(self, batch_id: str | None, args: argparse.Namespace) -> None:
        if batch_id:
            self._say(f"detached: {batch_id} keeps running; reattach with: {self._reattach(batch_id, args)}")


class RichReporter(LinesReporter):
    """A terminal: live progress bars (upload bytes; batch status, done/total, failed, rate, ETA, tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.console = Console(stderr=True)
        self.out = Console()
        self.progress: Progress | None = None
        self.task: Any = None
        self.watch_started = time.monotonic()

    def _start(self, *columns: Any, description: str, total: float | None, **fields: Any) -> None:
        self._stop()
        self.progress = Progress(*columns, console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, **fields)

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            self.console.print(text, highlight=False)

    def upload_mode(self, mode: str, parts: int) -> None:
        Reporter.upload_mode(self, mode, parts)
        how = "" if mode == "direct" else f" (Uploads API, {parts} parts)"
        self._start(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(),
                    description=f"upload {self.upload_path.name if self.upload_path else ''}{how}",
                    total=self.upload_bytes)

    def upload_progress(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def upload_done(self, file: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.upload_bytes)
        self._stop()
        super().upload_done(file)

    def batch(self, batch: Any) -> None:
        completed, failed, total = _counts(batch)
        rate, eta = self.rate.update(completed + failed, total)
        if self.progress is None:
            self._start(SpinnerColumn(), TextColumn("[bold]{task.fields[status]:<11}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.fields[of]} done"),
                        TextColumn("[red]{task.fields[failed]}"), TextColumn("{task.fields[rate]}"),
                        TextColumn("ETA {task.fields[eta]}"), TextColumn("elapsed {task.fields[elapsed]}"),
                        TextColumn("{task.fields[tokens]}"), description=batch.id, total=None, status="", of="?",
                        failed="", rate="", eta="-", elapsed="0s", tokens="")
            self.watch_started = time.monotonic()
        if batch.status != self.status:
            self._say(f"{batch.id} {batch.status}")
            self.status = batch.status
        assert self.progress is not None
        self.progress.update(self.task, completed=completed + failed, total=total or None, status=batch.status,
                             failed=f"{failed:,} failed" if failed else "",
                             rate=f"{rate:,.1f}/s" if rate else "", eta=_duration(eta), tokens=_tokens_text(batch),
                             of=f"{total:,}" if total else "?",
                             elapsed=_duration(time.monotonic() - self.watch_started))

    def pause(self) -> None:
        if self.progress is not None:
            self.progress.stop()

    def resume(self) -> None:
        if self.progress is not None:
            self.progress.start()

    def download_start(self, kind: str, dest: Path) -> None:
        self._start(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), description=f"download {kind} -> {dest}", total=None)

    def download_progress(self, written: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=written, total=total)

    def download_done(self, kind: str, dest: Path) -> None:
        self._stop()

    def done(self, batch: Any, *, files: dict[str, str], problems: list[str], exit_code: int,
             elapsed: float) -> None:
        self._stop()
        for line in self._summary(batch, files, elapsed):
            self.out.print(line, highlight=False)
        for line in problems:
            self.console.print(f"  {line}", highlight=False, markup=False)

    def close(self) -> None:
        self._stop()


class JsonReporter(Reporter):
    """--json: one JSON object per line on stdout; the last has `"event": "done"` (or `detached`)."""

    def _emit(self, **obj: Any) -> None:
        print(json.dumps(obj, separators=(",", ":")), flush=True)

    def upload_mode(self, mode: str, parts: int) -> None:
        super().upload_mode(mode, parts)
        self._emit(event="upload", mode=mode, parts=parts, bytes=self.upload_bytes, path=str(self.upload_path))

    def upload_done(self, file: Any) -> None:
        self._emit(event="uploaded", file_id=file.id, bytes=self.upload_bytes, mode=self.mode,
                   parts=self.parts, path=str(self.upload_path))

    def created(self, batch: Any) -> None:
        self._emit(event="created", batch_id=batch.id, endpoint=batch.endpoint, status=batch.status)

    def batch(self, batch: Any) -> None:
        completed, failed, total = _counts(batch)
        rate, eta = self.rate.update(completed + failed, total)
        self._emit(event="progress", batch_id=batch.id, status=batch.status, completed=completed, failed=failed,
                   total=total, rate=round(rate, 3) if rate else None, eta_seconds=round(eta, 1) if eta else None,
                   usage=_usage(batch), time=time.time())

    def note(self, text: str) -> None:
        self._emit(event="note", message=text)

    def download_done(self, kind: str, dest: Path) -> None:
        self._emit(event="downloaded", kind=kind, path=str(dest), bytes=dest.stat().st_size)

    def done(self, batch: Any, *, files: dict[str, str], problems: list[str], exit_code: int,
             elapsed: float) -> None:
        completed, failed, total = _counts(batch)
        errors = [{"code": e.code, "line": e.line, "message": e.message, "param": e.param}
                  for e in (batch.errors.data if batch.errors and batch.errors.data else [])]
        self._emit(event="done", batch_id=batch.id, status=batch.status, completed=completed, failed=failed,
                   total=total, output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
                   files=files, errors=errors, problems=problems, usage=_usage(batch),
                   elapsed_seconds=round(elapsed, 3), exit_code=exit_code)

    def detached(self, batch_id: str | None, args: argparse.Namespace) -> None:
        self._emit(event="detached", batch_id=batch_id,
                   reattach=self._reattach(batch_id, args) if batch_id else None, exit_code=130)

    def interrupted(self, batch_id: str | None) -> None:
        self._emit(event="interrupted", batch_id=batch_id, exit_code=130)


def make_reporter(args: argparse.Namespace) -> Reporter:
    if getattr(args, "json", False):
        return JsonReporter()
    if getattr(args, "quiet", False):
        return Reporter()
    return RichReporter() if sys.stderr.isatty() else LinesReporter()
