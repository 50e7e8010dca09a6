"""`batchgate local ...` hands its arguments to local mode untouched; `keys` needs a subcommand."""
from __future__ import annotations

import sys
import types

import pytest

from batchgate_cli import main as cli


def test_local_arguments_pass_through(monkeypatch):
    seen = []
    fake = types.ModuleType("batchgate_local.cli")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "batchgate_local.cli", fake)
    assert cli.main(["local", "--port", "8080", "-h"]) == 0
    assert seen == [["--port", "8080", "-h"]]


def test_keys_without_a_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["keys"])
    assert caught.value.code == 2
