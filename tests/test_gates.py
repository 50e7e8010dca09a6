"""The gates that keep the code's shape (issue 13): ruff, mypy (strict on domain/, models/ and the
contract) and the import-linter contracts in pyproject.toml. `make test` runs them here, so a layer
rule broken in a commit fails CI like a broken test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHS = os.pathsep.join(str(ROOT / p) for p in ("functions", "tools", "."))


def _run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(tool, path=str(BIN)) or pytest.fail(f"{tool} is not installed (make setup)")
    env = {**os.environ, "PYTHONPATH": PATHS}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_ruff():
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    result = _run("mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts():
    result = _run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_layer_rule_fails_the_import_gate(tmp_path):
    """The gate is not vacuous: a copy of the code whose domain imports boto3 breaks a contract."""
    for name in ("functions", "tools", "infra"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "cdk.out"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "functions/batchgate/domain/leak.py").write_text("import boto3  # a layer rule broken\n")
    exe = shutil.which("lint-imports", path=str(BIN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tmp_path / p) for p in ("functions", "tools", "."))}
    result = subprocess.run([exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode != 0, result.stdout
    assert "batchgate.domain.leak -> boto3" in result.stdout, result.stdout
