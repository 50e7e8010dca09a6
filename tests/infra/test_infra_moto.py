"""The local environment's templates deploy into moto's CloudFormation (what local mode does)."""
import io
import json
import warnings
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def emulate_bootstrap(outdir: Path, stacks: list[str]) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String")
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"cdk-hnb659fds-assets-{account}-{REGION}"
    s3.create_bucket(Bucket=bucket)
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        archive.writestr("placeholder.py", "")
    for stack in stacks:
        manifest = json.loads((outdir / f"{stack}.assets.json").read_text())
        for asset in manifest["files"].values():
            for destination in asset["destinations"].values():
                s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body.getvalue())


def test_local_stacks_create_in_moto(synth, aws):
    result = synth("local")
    stacks = ["batchgate-local-stateful", "batchgate-local-service"]
    emulate_bootstrap(Path(result.outdir), stacks)
    cfn = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns about the types it skips (stage, authorizer, policies)
        for stack in stacks:
            cfn.create_stack(StackName=stack, TemplateBody=json.dumps(result.templates[stack]),
                             Capabilities=["CAPABILITY_IAM"])
            assert cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"

    functions = boto3.client("lambda", region_name=REGION).list_functions()["Functions"]
    assert len(functions) == 10   # 8 engine and API functions, the webhook sender, the console
    for fn in functions:
        variables = fn["Environment"]["Variables"]
        assert all(isinstance(v, str) and v and v != "None" for v in variables.values()), fn["Handler"]
    mappings = boto3.client("lambda", region_name=REGION).list_event_source_mappings()["EventSourceMappings"]
    assert [m["FunctionResponseTypes"] for m in mappings] == [["ReportBatchItemFailures"]] * 2  # chunks, webhooks
    assert len(boto3.client("stepfunctions", region_name=REGION).list_state_machines()["stateMachines"]) == 1
