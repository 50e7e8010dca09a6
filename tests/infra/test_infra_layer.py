"""The layer's local bundling is called by the CDK through jsii and writes a `python/` folder."""
import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from infra.constructs.layer import LocalPipBundling


def test_local_pip_bundling_runs_through_the_cdk(tmp_path):
    # A requirements file with nothing to install keeps this offline; the CDK must take the local
    # path (the registry image below does not exist, so a Docker fallback would fail).
    source = tmp_path / "layer"
    source.mkdir()
    (source / "requirements.txt").write_text("# nothing to install\n")
    app = cdk.App(outdir=str(tmp_path / "out"))
    stack = cdk.Stack(app, "probe")
    lambda_.LayerVersion(stack, "Layer", code=lambda_.Code.from_asset(str(source), bundling=cdk.BundlingOptions(
        image=cdk.DockerImage.from_registry("batchgate.invalid/no-such-image"),
        local=LocalPipBundling(source),
    )))
    assembly = app.synth()
    assets = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("asset.")]
    assert assets and (assets[0] / "python").is_dir()
    assert assembly.get_stack_by_name("probe").template
