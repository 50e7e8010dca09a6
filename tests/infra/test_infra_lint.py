"""Template linters (issue 8): cfn-lint (pinned in pyproject.toml) reports no error on any stack of the
deployed environments, and every state machine definition validates against the Amazon States
Language (asl-validator, pinned in package.json, installed by `make setup`). Each check is also shown
failing on a broken input, so neither can pass by checking nothing."""
from __future__ import annotations

import copy
import json
import subprocess

import pytest
from cfnlint.api import ManualArgs, lint
from infra_helpers import resources

from infra.paths import ROOT

ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::URLSuffix": "amazonaws.com"}


# The one finding accepted, and only as a warning: W3005 "obsolete DependsOn". aws-cdk-lib makes every
# Lambda function (and the state machine) DependsOn its role although the Role GetAtt already orders
# them; the template is correct, CloudFormation just does not need the hint.
ACCEPTED_WARNINGS = {"W3005"}
# Every optional resource the configuration can add (custom domain, alarm e-mail) is linted too.
DOMAIN = {"name": "batch.example.com", "hosted_zone_id": "Z0123456789ABCDEFGHIJ", "hosted_zone_name": "example.com",
          "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0e7c7c1a-1111-2222-3333-444455556666"}
ALL_OPTIONS = {"domain": DOMAIN, "alarms": {"email": "ops@example.com"}}


def cfn_findings(template: dict) -> list[str]:
    """Every cfn-lint error, and every warning but the accepted ones."""
    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
    return [f"{m.rule.id}: {m}" for m in matches
            if m.rule.id.startswith("E") or (m.rule.id.startswith("W") and m.rule.id not in ACCEPTED_WARNINGS)]


@pytest.mark.parametrize("env,overrides", [("dev", None), ("prod", None), ("dev", ALL_OPTIONS)],
                         ids=["dev", "prod", "dev-all-options"])
def test_cfn_lint_reports_no_error(synth, env, overrides):
    templates = synth(env, overrides).templates
    assert len(templates) == 2
    for name, template in templates.items():
        assert cfn_findings(template) == [], name
    if overrides:
        types = {r["Type"] for t in templates.values() for r in t["Resources"].values()}
        assert {"AWS::ApiGateway::DomainName", "AWS::Route53::RecordSet", "AWS::SNS::Subscription"} <= types


def test_cfn_lint_reports_a_broken_template(synth):
    template = copy.deepcopy(synth("dev").templates["batchgate-dev-stateful"])
    template["Resources"]["ChunkQueue"]["Properties"]["VisibilityTimeout"] = "a while"
    assert any(e.startswith("E30") for e in cfn_findings(template))


def test_cfn_lint_reports_a_warning_other_than_the_accepted_one(synth):
    template = copy.deepcopy(synth("dev").templates["batchgate-dev-stateful"])
    template["Parameters"] = {**template.get("Parameters", {}), "NeverUsed": {"Type": "String"}}
    assert any(e.startswith("W2001") for e in cfn_findings(template))     # unused parameter


def _render(value) -> str:
    """A DefinitionString with its intrinsics replaced by values of the right shape (ARNs)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_render(p) for p in parts)
    if "Ref" in value:
        return PSEUDO.get(value["Ref"], f"ref-{value['Ref']}")
    if "Fn::GetAtt" in value:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{value['Fn::GetAtt'][0]}"
    raise AssertionError(f"unexpected intrinsic in a state machine definition: {value}")


def asl_problems(definition: dict, tmp_path) -> str | None:
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    done = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True,
                          timeout=120)
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()


def _definitions(template: dict) -> list[dict]:
    return [json.loads(_render(r["Properties"]["DefinitionString"]))
            for r in resources(template, "AWS::StepFunctions::StateMachine").values()]


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_the_state_machine_definition_is_valid_states_language(synth, env, tmp_path):
    definitions = [d for t in synth(env).templates.values() for d in _definitions(t)]
    assert len(definitions) == 1
    for definition in definitions:
        assert asl_problems(definition, tmp_path) is None


def test_the_states_language_validator_reports_a_broken_definition(synth, tmp_path):
    (definition,) = _definitions(synth("dev").templates["batchgate-dev-service"])
    definition["States"]["Dispatch"]["Next"] = "NoSuchState"
    assert asl_problems(definition, tmp_path)
