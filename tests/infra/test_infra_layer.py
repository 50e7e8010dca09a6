"""The layer's local bundling is called by the CDK through jsii and writes a `python/` folder."""
import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_

from infra.constructs.layer import WHEELS_ENV, LocalPipBundling


def probe_app(tmp_path, requirements: str) -> cdk.App:
    """An app with one layer bundled from `requirements` (the registry image does not exist, so a
    Docker fallback fails, and says docker)."""
    source = tmp_path / "layer"
    source.mkdir()
    (source / "requirements.txt").write_text(requirements)
    app = cdk.App(outdir=str(tmp_path / "out"))
    stack = cdk.Stack(app, "probe")
    lambda_.LayerVersion(stack, "Layer", code=lambda_.Code.from_asset(str(source), bundling=cdk.BundlingOptions(
        image=cdk.DockerImage.from_registry("batchgate.invalid/no-such-image"),
        local=LocalPipBundling(source),
    )))
    return app


def test_local_pip_bundling_runs_through_the_cdk(tmp_path):
    # A requirements file with nothing to install keeps this offline; the CDK must take the local path.
    app = probe_app(tmp_path, "# nothing to install\n")
    assembly = app.synth()
    assets = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("asset.")]
    assert assets and (assets[0] / "python").is_dir()
    assert assembly.get_stack_by_name("probe").template


def test_offline_bundling_that_fails_never_falls_back_to_docker(tmp_path, monkeypatch):
    # With the wheels folder named, a wheel missing from it is an error: the CDK's Docker fallback
    # would pull the bundling image from the network.
    (tmp_path / "wheels").mkdir()
    monkeypatch.setenv(WHEELS_ENV, str(tmp_path / "wheels"))
    with pytest.raises(RuntimeError, match="cannot be bundled offline") as raised:
        probe_app(tmp_path, "six==1.17.0\n").synth()     # the CDK bundles as the layer is built
    assert "docker" not in str(raised.value)
