"""`python -m bench [--quick] [--only SECTION ...]`: run the sections, print each figure with its goal,
and end with one JSON line holding every figure."""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass

import orjson

from bench.report import SectionResult, rounded

SECTIONS = ("validation", "worker", "finalize", "local", "upstream")


@dataclass(frozen=True)
class Sizes:
    validation_lines: int
    worker_lines: int
    worker_repeats: int
    finalize_small_mb: int
    finalize_big_mb: int
    calls_lines: int
    cancel_lines: int
    fairness_lines: int = 10_000
    upstream_lines: int = 8_960     # section 7: 28 chunks of 320 lines at N / L = 64 lines/s


FULL = Sizes(validation_lines=50_000, worker_lines=2_000, worker_repeats=3, finalize_small_mb=20,
             finalize_big_mb=200, calls_lines=10_000, cancel_lines=600)
# Both finalize sizes stay above one 8 MiB multipart part, so the peak ratio compares like with like.
# Section 4 runs the full size's 10,000-line batch in the quick run too (under half a minute): a batch's
# fixed calls and transitions are spread over its lines, so the per-line figures depend on its size,
# and the goals were set against the full run's batch.
QUICK = Sizes(validation_lines=5_000, worker_lines=1_000, worker_repeats=2, finalize_small_mb=10,
              finalize_big_mb=50, calls_lines=10_000, cancel_lines=600, upstream_lines=4_480)
TOY = Sizes(validation_lines=200, worker_lines=64, worker_repeats=1, finalize_small_mb=1, finalize_big_mb=2,
            calls_lines=50, cancel_lines=64, fairness_lines=200, upstream_lines=320)


def machine() -> dict:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "mem_gib": mem, "python": platform.python_version(),
            "platform": platform.platform()}


def _guarded(title: str, fn, *args) -> list[SectionResult]:
    try:
        out = fn(*args)
    except Exception as exc:  # a piece not ready must not stop the other sections
        traceback.print_exc(file=sys.stderr)
        return [SectionResult(title, unavailable=f"{type(exc).__name__}: {exc}"[:400])]
    return out if isinstance(out, list) else [out]


def run_sections(sizes: Sizes, only: tuple[str, ...] = SECTIONS, out=print) -> dict:
    """Run the chosen sections; print them as they finish; return the JSON summary."""
    from bench.sections import finalize, local_mode, validation, worker

    results: list[SectionResult] = []
    overhead = None

    def emit(rs: list[SectionResult]) -> None:
        for r in rs:
            r.print(out)
        results.extend(rs)

    if "validation" in only:
        emit(_guarded("1. Validation", validation.run, sizes.validation_lines))
    if "worker" in only:
        rs = _guarded("2. Worker throughput", worker.run, sizes.worker_lines, sizes.worker_repeats)
        overhead = rs[0].extra.get("seconds_per_chunk")
        emit(rs)
    if "finalize" in only:
        emit(_guarded("3. Finalization", finalize.run, sizes.finalize_small_mb, sizes.finalize_big_mb))
    if "local" in only:
        emit(_guarded("4./5./6. Local mode", local_mode.run, sizes.calls_lines, sizes.cancel_lines, 400, overhead,
                      sizes.fairness_lines))
    if "upstream" in only:
        from bench.sections import upstream
        emit(_guarded("7. Rate-limited upstream", upstream.run, sizes.upstream_lines))

    summary: dict = {}
    for r in results:
        for f in r.figures:
            summary[f.key.strip()] = rounded(f.value)
    misses = [f.key.strip() for r in results for f in r.figures if f.passed is False]
    summary["misses"] = misses
    summary["unavailable"] = {r.title: r.unavailable for r in results if r.unavailable}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes on 2 cores")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # The functions log JSON per request; the benchmark's stdout is for figures.
    logging.getLogger("moto").setLevel(logging.ERROR)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    # ...and its metrics documents (one per chunk run and per batch) would land between the figures.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    info = machine()
    print(f"batchgate bench ({'quick' if args.quick else 'full'}): {info['cpus']} CPUs, {info['mem_gib']} GiB, "
          f"Python {info['python']}, {info['platform']}", flush=True)
    t = time.perf_counter()
    summary = run_sections(sizes, tuple(args.only), out=lambda s: print(s, flush=True))
    summary.update(quick=args.quick, seconds=round(time.perf_counter() - t, 1), machine=info)
    print(f"\n{len(summary['misses'])} goal(s) missed: {', '.join(summary['misses']) or 'none'}; "
          f"unavailable: {', '.join(summary['unavailable']) or 'none'}")
    print(orjson.dumps(summary).decode())
    return 0
