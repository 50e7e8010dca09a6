"""CDK entry point: `cdk synth -c env=<dev|prod|local>`. The only place that reads context."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import EnvironmentConfig, get_config
from infra.stacks.service import ServiceStack
from infra.stacks.stateful import StatefulStack

DEFAULT_ENV = "dev"


def build(
    app: cdk.App, config: EnvironmentConfig, *, nag: bool = True
) -> tuple[StatefulStack, ServiceStack]:
    """Add one environment's stacks (`batchgate-<env>-stateful`, `batchgate-<env>-service`) to `app`."""
    env = cdk.Environment(account=config.account, region=config.region) if config.account or config.region else None
    stateful = StatefulStack(
        app, config.stack_name("stateful"), config=config, env=env,
        description=f"batchgate {config.name}: tables, bucket, chunk queue, event bus",
        termination_protection=config.removal == "retain",
    )
    service = ServiceStack(
        app, config.stack_name("service"), config=config, stateful=stateful, env=env,
        description=f"batchgate {config.name}: API, functions, batch workflow, chunk workers",
    )
    cdk.Tags.of(app).add("project", "batchgate")
    cdk.Tags.of(app).add("environment", config.name)
    if nag:
        # cdk-nag 3 is a policy-validation plugin: synth fails on any finding not acknowledged.
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stateful, service


def build_from_context(app: cdk.App, overrides: Mapping[str, Any] | None = None) -> tuple[StatefulStack, ServiceStack]:
    return build(app, get_config(app.node.try_get_context("env") or DEFAULT_ENV, overrides))


def main() -> None:
    app = cdk.App()
    build_from_context(app)
    app.synth()


if __name__ == "__main__":
    main()
