"""1. Validation throughput: the real validator (domain/validation.py) over a local file stream, side by
side with plain `orjson.loads` of every line of the same file."""
from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

import orjson

from bench.data import write_batch_file
from bench.measure import peak_bytes
from bench.report import SectionResult, at_least, info

MB = 1_000_000


def _blocks(path: Path, size: int):
    with path.open("rb") as f:
        yield from iter(functools.partial(f.read, size), b"")


def _validate(path: Path) -> object:
    from batchgate.domain.jsonl import iter_lines
    from batchgate.domain.validation import READ_BLOCK, validate_lines

    # The Validate step reads S3 in READ_BLOCK pieces; the same pieces come from the file here.
    return validate_lines(iter_lines(_blocks(path, READ_BLOCK)), "/v1/chat/completions",
                          chunk_max_lines=500, chunk_max_bytes=8 * 1024 * 1024)


def _baseline(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return n


def _best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run(lines: int, repeats: int = 2, workdir: Path | None = None) -> SectionResult:
    res = SectionResult(f"1. Validation of a batch file ({lines:,} chat lines of ~4 KB)")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "batch.jsonl"
        size = write_batch_file(path, lines)
        _baseline(path)  # warm the page cache for both
        # Interleaved, best of N each: both see the same machine noise.
        t_base = t_val = float("inf")
        result = None
        for _ in range(repeats):
            t_base = min(t_base, _best_of(lambda: _baseline(path), 1)[0])
            t, result = _best_of(lambda: _validate(path), 1)
            t_val = min(t_val, t)
        if not result.ok or result.total != lines:
            res.unavailable = f"validator rejected the generated file: {result.errors[:2]}"
            return res
        peak = peak_bytes(lambda: _validate(path))
    mb = size / MB
    res.figures += [
        info("validation_file_mb", mb, "MB"),
        info("validation_mb_s", mb / t_val, "MB/s"),
        info("validation_lines_s", lines / t_val, "lines/s"),
        info("orjson_baseline_mb_s", mb / t_base, "MB/s"),
        at_least("validation_ratio_vs_orjson", t_base / t_val, 0.5),
        info("validation_peak_mb", peak / MB, "MB"),
    ]
    res.notes += [
        f"{len(result.chunks)} chunks; baseline = `for line in file: orjson.loads(line)`; best of {repeats}",
        "peak = tracemalloc peak of Python allocations during one validation pass (separate, untimed run)",
    ]
    return res
