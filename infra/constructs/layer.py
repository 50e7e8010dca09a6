"""The third-party dependency layer, built from layers/requirements.txt for Lambda's arm64 Python 3.12."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.paths import LAYERS_DIR, ROOT

PYTHON_VERSION = "3.12"
# pip picks wheels for Lambda's platform whatever machine runs the synth; no sdists (no compilers).
PLATFORM_ARGS = [
    "-r", "requirements.txt",
    "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
    "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
]
PIP_ARGS = ["install", "--quiet", "--disable-pip-version-check", "--no-compile", *PLATFORM_ARGS]
# With this variable naming a folder of those wheels (`make setup` fills .local/layer-wheels), the
# bundling installs from it alone: the tests synthesize the whole app, layer included, offline.
WHEELS_ENV = "BATCHGATE_LAYER_WHEELS"
WHEELS_DIR = ROOT / ".local" / "layer-wheels"


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Bundle with this machine's pip (fast, no Docker); False lets the CDK fall back to Docker."""

    def __init__(self, source_dir: Path = LAYERS_DIR) -> None:
        self._source_dir = source_dir

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:  # jsii passes the BundlingOptions
        if not _has_pip():
            return False
        target = Path(output_dir) / "python"
        wheels = os.environ.get(WHEELS_ENV)
        offline = ["--no-index", "--find-links", wheels] if wheels else []
        result = subprocess.run(
            [sys.executable, "-m", "pip", *PIP_ARGS, *offline, "--target", str(target)],
            cwd=self._source_dir, check=False,
        )
        if result.returncode != 0 and wheels:
            # Returning False would make the CDK bundle in Docker, pulling its image from the network.
            raise RuntimeError(f"the dependency layer cannot be bundled offline from {wheels} (pip's message "
                               f"above); `make setup` downloads its wheels there")
        return result.returncode == 0


def download_wheels(dest: Path = WHEELS_DIR) -> None:
    """The layer's wheels for Lambda's platform into `dest` (network; `make setup` runs this)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    *PLATFORM_ARGS, "-d", str(dest.resolve())], cwd=LAYERS_DIR, check=True)


def _has_pip() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0


def dependency_layer_code() -> lambda_.Code:
    docker_command = " ".join(["pip", *PIP_ARGS, "--target", "/asset-output/python"])
    return lambda_.Code.from_asset(
        str(LAYERS_DIR),
        exclude=["build", "**/__pycache__"],
        bundling=BundlingOptions(
            image=lambda_.Runtime.PYTHON_3_12.bundling_image,
            command=["bash", "-c", docker_command],
            local=LocalPipBundling(),
        ),
    )


class DependencyLayer(Construct):
    """One layer with every runtime dependency (pinned like pyproject.toml), shared by all functions."""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.layer = lambda_.LayerVersion(
            self, "Layer",
            code=dependency_layer_code(),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="batchgate runtime dependencies (layers/requirements.txt)",
        )


if __name__ == "__main__":
    download_wheels(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else WHEELS_DIR)
