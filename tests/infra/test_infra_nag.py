"""cdk-nag AwsSolutions: no finding left unacknowledged, in any environment."""
import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_aws_solutions_checks_pass(synth, env):
    report = AwsSolutionsChecks().validate_scope(synth(env).app)
    findings = [
        f"{v.rule_name} ({v.severity}) at {[r.construct_path for r in v.violating_resources]}: {v.description}"
        for v in report.violations
    ]
    assert findings == []
    assert report.success


def test_an_unacknowledged_finding_is_reported():
    """The check above can fail: a fresh wildcard statement is caught."""
    app = cdk.App()
    stack = cdk.Stack(app, "probe")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    report = AwsSolutionsChecks().validate_scope(app)
    assert any(v.rule_name.startswith("AwsSolutions-IAM5") for v in report.violations)


def test_a_new_wildcard_grant_on_a_function_role_is_reported():
    """Issue 8, defect 5: the X-Ray acknowledgement covers the X-Ray policy only, not the role."""
    from infra.synth import synthesize_app
    result = synthesize_app("dev")
    worker = result.service.workers.worker_function
    worker.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"]))
    report = AwsSolutionsChecks().validate_scope(result.app)
    flagged = [v for v in report.violations if v.rule_name.startswith("AwsSolutions-IAM5")]
    assert flagged and any("Chunks" in r.construct_path for v in flagged for r in v.violating_resources)
