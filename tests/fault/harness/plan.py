"""What a run does: its lines (with the dev upstream's behaviour markers), crash points, duplicate
deliveries, cancel moment or short window, all drawn from one seed; and the input file it uploads."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from .crash import CRASH_STEPS


@dataclass
class LineSpec:
    custom_id: str
    marker: str
    expect_ok: bool | None    # None: either file


@dataclass
class RunSpec:
    seed: int
    kind: str                 # "faults" | "cancel" | "expire"
    lines: list[LineSpec]
    crash_points: set[tuple[str, int]]
    duplicates: int
    cancel_after: float | None
    window_seconds: int | None


DEEP_LINE, BIG_NUMBER_LINE = "deep-line", "big-number-line"   # lines the upstream echoes back
DEEP_LEVELS, BIG_NUMBER = 600, 2**70
# marker -> whether the line ends in the output file (True) or the error file (False)
UPSTREAM_MARKERS: list[tuple[str, bool | None, float]] = [   # (marker, ends ok (None: either), weight)
    ("", True, 8.0),
    ("__fail_429_once__", True, 1.0),
    ("__fail_429_ms_once__", True, 1.0),
    ("__fail_500_once__", True, 1.0),
    ("__fail_500__", False, 0.5),
    ("__fail_400__", False, 0.5),
    # 50-600 ms against the 0.8 s upstream timeout: on a loaded machine a slow answer can still miss
    # it (a 200-run sweep beside another saw 4 of ~2,000), so either file is right; what these lines
    # test is that slow answers are kept once and in order, not where a timing race puts them.
    ("__sleep_ms:{ms}__", None, 1.5),
    # Longer than the upstream timeout: request_timeout, usually. The worker's AWS calls are
    # synchronous and block its event loop (a throttled flush backs off for seconds), and an answer
    # that arrived meanwhile is read before the timeout fires, so either file is right.
    ("__sleep_ms:1500__", None, 0.3),
    # A hostile upstream and hostile lines (issue 9): each must end where it says, and change nothing
    # for any other line.
    ("__usage_huge__", True, 0.3),
    ("__usage_negative__", True, 0.3),
    ("__set_cookie__", True, 0.3),
    ("__redirect__", False, 0.2),
    ("__not_json__", True, 0.2),
    ("__deep_answer__", True, 0.2),
    ("__huge_answer__", False, 0.015),   # ~10 MB: over the upstream's answer cap (response_too_large)
    (DEEP_LINE, True, 0.3),
    (BIG_NUMBER_LINE, True, 0.3),
]
# Cancels may land at any moment, before the Validate step too (test_fault_targeted.py pins that case).
CANCEL_NOT_BEFORE_SECONDS = 0.0


INVALID_CUSTOM_ID = "\U0001F600" * 100   # 1,002 duplicates of it: errors far over 400 KB if unbounded


def plan_run(seed: int, kind: str | None = None) -> RunSpec:
    rng = random.Random(seed)
    kind = kind or rng.choices(["faults", "cancel", "expire", "invalid"], weights=[3, 1, 1, 0.5])[0]
    if kind == "invalid":  # huge error quotes: the batch must fail with its errors stored
        return RunSpec(seed=seed, kind=kind, lines=[LineSpec(INVALID_CUSTOM_ID, "", False)] * 1002,
                       crash_points=set(), duplicates=0, cancel_after=None, window_seconds=None)
    n = rng.randint(30, 120) if kind != "expire" else rng.randint(60, 120)
    lines = []
    for i in range(n):
        marker, ok, _ = rng.choices(UPSTREAM_MARKERS, weights=[w for *_, w in UPSTREAM_MARKERS])[0]
        if kind == "expire" and marker == "" and rng.random() < 0.5:
            marker = "__sleep_ms:{ms}__"  # slow enough that the window closes mid-run
        marker = marker.format(ms=rng.randint(50, 600))
        lines.append(LineSpec(f"s{seed}-l{i}", marker, ok))
    n_crashes = rng.choice([0, 1, 2, 2, 3, 3])
    points: set[tuple[str, int]] = set()
    for _ in range(n_crashes):
        name = rng.choice(CRASH_STEPS)
        points.add((name, rng.randint(1, 30 if name == "after_upstream" else 4)))
    return RunSpec(seed=seed, kind=kind, lines=lines, crash_points=points,
                   duplicates=rng.randint(0, 8),
                   cancel_after=rng.uniform(CANCEL_NOT_BEFORE_SECONDS, 7.0) if kind == "cancel" else None,
                   window_seconds=rng.randint(3, 9) if kind == "expire" else None)


def input_bytes(spec: RunSpec) -> bytes:
    out = []
    for line in spec.lines:
        body: dict[str, Any] = {"model": "fault-model",
                                "messages": [{"role": "user", "content": f"{line.custom_id} {line.marker}"}]}
        if line.marker in (DEEP_LINE, BIG_NUMBER_LINE):
            body["messages"][0]["content"] += " __echo_raw__"
            body["tree" if line.marker == DEEP_LINE else "seed"] = \
                json.loads("[" * DEEP_LEVELS + "]" * DEEP_LEVELS) if line.marker == DEEP_LINE else BIG_NUMBER
        out.append(json.dumps({"custom_id": line.custom_id, "method": "POST", "url": "/v1/chat/completions",
                               "body": body}))
    return ("\n".join(out) + "\n").encode()
