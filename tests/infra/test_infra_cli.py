"""The pinned CDK CLI synthesizes the real app offline (the path `cdk deploy` takes)."""
import json
import os
import subprocess

import pytest

from infra.paths import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(not CDK.exists(), reason="pinned CDK CLI not installed (make setup runs npm ci)")
def test_cdk_cli_synth_offline_for_dev(tmp_path):
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    # --exclusively on the stateful stack: the CLI then bundles no asset (the dependency layer's
    # pip bundling needs PyPI); the whole app is still synthesized, and cdk-nag runs on all of it.
    result = subprocess.run(
        [str(CDK), "synth", "--exclusively", "batchgate-dev-stateful", "-c", "env=dev", "--no-notices",
         "-o", str(tmp_path), "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service = json.loads((tmp_path / "batchgate-dev-service.template.json").read_text())
    stateful = json.loads((tmp_path / "batchgate-dev-stateful.template.json").read_text())
    assert "StateTable" in stateful["Resources"]
    assert any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in service["Resources"].values())
