"""One session-scoped, in-process synth (infra/synth.py), cached per environment and overrides."""
from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from infra.synth import SynthResult, synthesize_app


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Callable[..., SynthResult]:
    cache: dict[str, SynthResult] = {}

    def get(env: str, overrides: dict | None = None) -> SynthResult:
        key = json.dumps([env, overrides], sort_keys=True)
        if key not in cache:
            outdir = tmp_path_factory.mktemp(f"cdk-{env}")
            cache[key] = synthesize_app(env, overrides, outdir=outdir)
        return cache[key]

    return get
