"""The pinned CDK CLI synthesizes the whole app the way `cdk deploy` does: both stacks, dev and prod,
with the dependency layer bundled (pip, from the wheels `make setup` downloaded: offline)."""
import json
import os
import subprocess

import pytest

from infra.constructs.layer import WHEELS_DIR, WHEELS_ENV
from infra.paths import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_cdk_cli_synthesizes_the_whole_app_with_the_layer_bundled_offline(tmp_path, env):
    assert CDK.exists(), "the pinned CDK CLI is missing: make setup runs npm ci"
    assert any(WHEELS_DIR.glob("pydantic_core-*.whl")), "the layer's wheels are missing: make setup downloads them"
    environ = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
               WHEELS_ENV: str(WHEELS_DIR)}
    result = subprocess.run(
        [str(CDK), "synth", "--all", "-c", f"env={env}", "--no-notices", "-o", str(tmp_path), "-q"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service = json.loads((tmp_path / f"batchgate-{env}-service.template.json").read_text())
    stateful = json.loads((tmp_path / f"batchgate-{env}-stateful.template.json").read_text())
    assert "StateTable" in stateful["Resources"]
    assert any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in service["Resources"].values())
    # The layer's asset is the bundled build (Lambda's arm64 wheels), not its requirements file.
    (layer,) = [r for r in service["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    asset = tmp_path / f"asset.{layer['Metadata']['aws:asset:path'].split('.', 1)[1]}"
    site = asset / "python"
    assert (site / "pydantic").is_dir() and (site / "aws_lambda_powertools").is_dir()
    assert [p.name for p in (site / "pydantic_core").glob("_pydantic_core*.so")] == \
        ["_pydantic_core.cpython-312-aarch64-linux-gnu.so"]
