"""`batchgate smoke` against local mode (issue 8): it passes on a working service and fails, with a
clear line and a non-zero exit, on one whose permission is broken."""
from __future__ import annotations

import pytest

from batchgate_cli import main as cli
from batchgate_cli.smoke import Smoke

from .conftest import KEY_A

pytestmark = pytest.mark.e2e


def _smoke(service, lines: list[str]) -> Smoke:
    # The defaults `batchgate smoke` runs with: the cancel batch's lines ask the dev upstream for
    # growing delays, so the cancel lands while the batch runs.
    return Smoke(base_url=service.base_url, api_key=KEY_A, poll_seconds=0.1, timeout=120, out=lines.append)


def test_smoke_passes_against_local_mode(local_service):
    lines: list[str] = []
    assert _smoke(local_service, lines).run() == 0, "\n".join(lines)
    assert len(lines) == 9 and all(line.startswith("ok   ") for line in lines[:-1]), "\n".join(lines)
    assert lines[-1].startswith("smoke: all checks passed")
    assert any("by redirect" in line for line in lines)


def test_smoke_fails_clearly_when_a_permission_is_broken(local_service):
    """Local mode enforces each function's role (local/iam.py): with s3:PutObject taken from the files
    function's role, as a broken deployment would have it, S3 denies its writes and uploads fail."""
    lines: list[str] = []
    smoke = _smoke(local_service, lines)
    with local_service.iam.revoked("ApiFiles", "s3:PutObject") as denied:
        smoke.check("upload", lambda: smoke.upload(b'{"a":1}\n', "x.jsonl"))
    assert lines[0].startswith("FAIL upload: HTTP 500"), lines
    assert denied and all(d.startswith("ApiFilesFunction") and "s3:PutObject" in d for d in denied), denied


def test_smoke_command_exits_non_zero_with_one_line_per_check(capsys):
    rc = cli.main(["smoke", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "--timeout", "1"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1 and len(out) == 9 and all(line.startswith("FAIL ") for line in out[:-1])
    assert out[-1].startswith("smoke: FAILED: error envelope")
