"""What the client commands (`run`, `batches`, `files`) share: connection options, the SDK client, uploads
that switch to the Uploads API for large files, streaming downloads, and error messages.

Client side only: they talk to any OpenAI-compatible Files/Batches API (Batchgate or api.openai.com)
through the official `openai` SDK, never to AWS.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import openai

# Batchgate's direct POST /v1/files limit (functions/batchgate/settings.py max_direct_upload_bytes: a
# Lambda request carries 6 MB, base64 makes it 4/3 larger) and its Uploads API part limit (the same).
DIRECT_UPLOAD_LIMIT = 4 * 1024 * 1024
PART_SIZE = 4 * 1024 * 1024
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

# Exit codes of the client commands.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DETACHED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with what the user asked for (exit 2), with a message meant for them."""


def connection_options() -> argparse.ArgumentParser:
    """--base-url / --api-key / --timeout, as a parent parser (defaults as the SDK's: the environment)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument("--base-url", default=None,
                   help="API base URL including /v1 (default: $OPENAI_BASE_URL, else https://api.openai.com/v1)")
    g.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")
    return p


def make_client(args: argparse.Namespace) -> openai.OpenAI:
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise UsageError("no API key: pass --api-key or set OPENAI_API_KEY (`make local` prints a development key)")
    return openai.OpenAI(base_url=args.base_url or None, api_key=api_key, timeout=args.timeout, max_retries=3)


def api_error_text(exc: openai.OpenAIError) -> str:
    """One line for a failed API call: status, the error envelope's message and code."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        message = err.get("message") if isinstance(err, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        text = f"HTTP {exc.status_code}: {message or exc.message}"
        return f"{text} (code {code})" if code else text
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the API ({exc.__cause__ or exc}); check --base-url / $OPENAI_BASE_URL"
    return str(exc)


def run_command(body: Callable[[], int]) -> int:
    """Run a command body, turning usage and API errors into a message on stderr and an exit code."""
    try:
        return body()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except openai.NotFoundError as exc:
        print(f"error: {api_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except openai.BadRequestError as exc:
        print(f"error: {api_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except openai.OpenAIError as exc:
        print(f"error: {api_error_text(exc)}", file=sys.stderr)
        return EXIT_FAILED


# -- upload -------------------------------------------------------------------------------------------

class _CountingReader:
    """A read-only file wrapper that reports bytes read (for an upload progress bar)."""

    def __init__(self, fh: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._fh, self._on_read = fh, on_read

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._on_read(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _parts(path: Path, part_size: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(part_size):
            yield chunk


def upload_file(client: openai.OpenAI, path: Path, *, purpose: str = "batch", direct_limit: int = DIRECT_UPLOAD_LIMIT,
                part_size: int = PART_SIZE, on_progress: Callable[[int], None] | None = None,
                on_mode: Callable[[str, int], None] | None = None) -> Any:
    """Upload `path` and return the File object: one POST /v1/files up to `direct_limit` bytes, else (or when
    the server answers 413) the Uploads API (create, parts of `part_size` bytes in order, complete).
    `on_progress(n)` is called with byte counts as they go, `on_mode("direct"|"uploads", parts)` once or twice."""
    size = path.stat().st_size
    advance = on_progress or (lambda n: None)
    if size <= direct_limit:
        if on_mode:
            on_mode("direct", 1)
        try:
            with path.open("rb") as fh:
                return client.files.create(file=(path.name, _CountingReader(fh, advance), "application/jsonl"),
                                           purpose=purpose)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            if exc.status_code != 413:
                raise
            advance(-size)  # the server wants the Uploads API (its direct limit is lower): start over
    if on_mode:
        on_mode("uploads", max(1, -(-size // part_size)))
    upload = client.uploads.create(bytes=size, filename=path.name, mime_type="application/jsonl",
                                   purpose=purpose)  # type: ignore[arg-type]
    try:
        part_ids = []
        for chunk in _parts(path, part_size):
            part = client.uploads.parts.create(upload.id, data=chunk)
            part_ids.append(part.id)
            advance(len(chunk))
        done = client.uploads.complete(upload.id, part_ids=part_ids)
    except BaseException:
        try:
            client.uploads.cancel(upload.id)
        except Exception:  # best effort: the upload expires on its own after an hour
            pass
        raise
    if done.file is None:
        raise openai.OpenAIError(f"upload {upload.id} completed without a file (status {done.status})")
    return done.file


# -- download -----------------------------------------------------------------------------------------

def download_file(client: openai.OpenAI, file_id: str, dest: Path | None,
                  on_progress: Callable[[int, int | None], None] | None = None) -> int:
    """Stream a file's content to `dest` (None: stdout); return the byte count. The file is written to a
    temporary name next to `dest` and renamed when complete, so a half download never looks finished."""
    written = 0
    with client.files.with_streaming_response.content(file_id) as response:
        total = response.headers.get("content-length")
        expected = int(total) if total and total.isdigit() else None
        with _sink(dest) as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
                if on_progress:
                    on_progress(written, expected)
    return written


@contextmanager
def _sink(dest: Path | None) -> Iterator[IO[bytes]]:
    if dest is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    tmp = dest.with_name(f".{dest.name}.part")
    with tmp.open("wb") as fh:
        yield fh
    os.replace(tmp, dest)


# -- presentation ---------------------------------------------------------------------------------------

def when(ts: int | None) -> str:
    """A Unix time as local `YYYY-MM-DD HH:MM:SS` ('' for none)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def size_text(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
