"""In-process synthesis (no CDK CLI, no Docker, no pip): what local mode and the infra tests use.

The app is built exactly as `cdk synth` builds it (same code, same cdk.json context); only asset
bundling is switched off, so the dependency layer's asset is its requirements file, not a build.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import cx_api

from infra.app import build
from infra.config import get_config
from infra.paths import CDK_JSON
from infra.stacks.service import ServiceStack
from infra.stacks.stateful import StatefulStack

# Stacks whose assets are bundled at synth; none here (no Docker, no pip, no network).
BUNDLING_STACKS_CONTEXT = "aws:cdk:bundling-stacks"


@dataclass
class SynthResult:
    app: cdk.App
    stateful: StatefulStack
    service: ServiceStack
    assembly: cx_api.CloudAssembly
    templates: dict[str, dict]

    @property
    def outdir(self) -> str:
        return self.assembly.directory


def cdk_json_context() -> dict[str, Any]:
    return json.loads(CDK_JSON.read_text()).get("context", {})


def synthesize_app(
    env_name: str = "local",
    overrides: Mapping[str, Any] | None = None,
    *,
    outdir: str | Path | None = None,
    nag: bool = False,
) -> SynthResult:
    """Build and synthesize one environment. `outdir` keeps the cloud assembly (templates,
    `*.assets.json`, staged assets); by default it goes to a fresh temporary directory."""
    config = get_config(env_name, overrides)
    context = {**cdk_json_context(), BUNDLING_STACKS_CONTEXT: []}
    app = cdk.App(
        outdir=str(outdir or tempfile.mkdtemp(prefix="batchgate-cdk-")),
        context=context,
        analytics_reporting=False,
    )
    stateful, service = build(app, config, nag=nag)
    assembly = app.synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return SynthResult(app, stateful, service, assembly, templates)


def synthesize(
    env_name: str = "local",
    overrides: Mapping[str, Any] | None = None,
    *,
    outdir: str | Path | None = None,
) -> dict[str, dict]:
    """{stack name: CloudFormation template} for one environment, e.g.
    synthesize("local", {"upstream_base_url": "http://127.0.0.1:9001/v1", "completion_window_seconds": 3}).
    Without `outdir` the cloud assembly is deleted once the templates are read."""
    if outdir is not None:
        return synthesize_app(env_name, overrides, outdir=outdir).templates
    with tempfile.TemporaryDirectory(prefix="batchgate-cdk-") as tmp:
        return synthesize_app(env_name, overrides, outdir=tmp).templates
