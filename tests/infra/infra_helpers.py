"""Reading synthesized CloudFormation templates in the infra tests."""
from __future__ import annotations

import json


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


def one(template: dict, type_: str) -> tuple[str, dict]:
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def functions_by_handler(template: dict) -> dict[str, dict]:
    return {r["Properties"]["Handler"]: r for r in resources(template, "AWS::Lambda::Function").values()}


def render(value) -> str:
    """A template string value with its intrinsic functions replaced by <...> placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(render(p) for p in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    if isinstance(value, dict) and "Ref" in value:
        return "<{}>".format(value["Ref"])
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        return "<import {}>".format(render(value["Fn::ImportValue"]))
    return f"<{json.dumps(value)}>"


def render_policy(value):
    """A policy document (or any part of it) with every intrinsic rendered by `render`."""
    if isinstance(value, list):
        return [render_policy(v) for v in value]
    if isinstance(value, dict) and not any(k.startswith("Fn::") or k == "Ref" for k in value):
        return {k: render_policy(v) for k, v in value.items()}
    return render(value)


def state_machine_definition(template: dict) -> dict:
    _, machine = one(template, "AWS::StepFunctions::StateMachine")
    return json.loads(render(machine["Properties"]["DefinitionString"]))


def policy_statements(template: dict, role_logical_id: str) -> list[dict]:
    """Every statement of every AWS::IAM::Policy attached to the role."""
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions_of(statements: list[dict]) -> set[str]:
    out: set[str] = set()
    for s in statements:
        a = s["Action"]
        out.update([a] if isinstance(a, str) else a)
    return out


def role_of(function: dict) -> str:
    return function["Properties"]["Role"]["Fn::GetAtt"][0]
