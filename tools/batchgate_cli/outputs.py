"""The resources of a deployment, from its CloudFormation stack outputs (as `keys.resolve_table` does).

`--stack` names either stack of an environment (`batchgate-<env>-stateful` or `batchgate-<env>-service`)
or their common prefix (`batchgate-<env>`); both stacks' outputs are read, so a command finds the state
table and the state machine whichever it was given. Without `--stack`, `--env` (default dev) picks them.
"""
from __future__ import annotations

import argparse

from batchgate import aws

SUFFIXES = ("-stateful", "-service")


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="a stack of the deployment, or their prefix (default: batchgate-<env>)")
    parser.add_argument("--env", default="dev", help="environment whose stacks to read (default: dev)")


def stack_names(stack: str | None, env: str) -> list[str]:
    base = stack or f"batchgate-{env}"
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return [base + suffix for suffix in SUFFIXES]


def stack_outputs(stack: str | None, env: str = "dev") -> dict[str, str]:
    """OutputKey -> OutputValue over the deployment's stacks. Exits with a message when none is found."""
    cfn = aws.client("cloudformation")
    outputs: dict[str, str] = {}
    problems = []
    for name in stack_names(stack, env):
        try:
            described = cfn.describe_stacks(StackName=name)["Stacks"][0]
        except Exception as exc:
            problems.append(f"{name}: {exc}")
            continue
        outputs.update({o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])})
    if not outputs:
        raise SystemExit("error: cannot read the deployment's stacks (" + "; ".join(problems) + ")")
    return outputs


def require(outputs: dict[str, str], key: str) -> str:
    if key not in outputs:
        raise SystemExit(f"error: the stacks have no {key} output (deploy the current version)")
    return outputs[key]
