"""Suite-wide guards: fake AWS credentials (never a real account) and no network but loopback."""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
})
os.environ.pop("AWS_PROFILE", None)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            if host == "localhost":
                return
        raise ConnectionRefusedError(f"tests are offline: refused connection to {address!r}")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _offline_network():
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex


# -- IAM of local mode (issue 8) -------------------------------------------------------------------
# Every AWS call a function makes in local mode is checked against its role (batchgate/local/iam.py).
# A denied call fails the session even if the code swallowed the error; after a whole run (the e2e,
# fault and conformance suites all collected, nothing deselected) so does a grant no call used.
_LOCAL_SUITES = ("e2e", "fault", "conformance")
# Grants no suite reaches, each with the reason it is still needed: (function logical id prefix, action).
_NOT_EXERCISED = {
    ("ApiUploadsFunction", "s3:AbortMultipartUpload"): "a Complete that fails mid-write drops its upload",
    ("WorkflowFinalizeFunction", "s3:AbortMultipartUpload"): "a result file that fails mid-write is dropped",
    ("WorkflowDispatchFunction", "states:SendTaskFailure"): "a cancel landing while Dispatch runs (the fault "
                                                           "sweep reaches that window only sometimes)",
    ("ChunksWorkerFunction", "sqs:SendMessage"): "a worker short of time hands the rest of its chunk back "
                                                 "(the quick fault sweep reaches that only sometimes)",
}


def _whole_run(session) -> bool:
    config = session.config
    if config.getoption("keyword") or config.getoption("markexpr") or config.getoption("lf", False):
        return False
    dirs = {item.path.relative_to(config.rootpath).parts[1] for item in session.items
            if len(item.path.relative_to(config.rootpath).parts) > 2}
    return all(d in dirs for d in _LOCAL_SUITES)


def _iam_problems(session) -> list[str]:
    from batchgate_local.iam import LOG
    problems = [f"denied: {d}" for d in sorted(set(LOG.denied))]
    if _whole_run(session) and session.testsfailed == 0:
        problems += [f"granted, never used: {fn} {action} on {resource} ({policy})"
                     for fn, policy, action, resource in LOG.unused()
                     if not any(fn.startswith(f) and action == a for f, a in _NOT_EXERCISED)]
    return problems


def pytest_sessionfinish(session, exitstatus):
    from batchgate_local.iam import LOG
    if not LOG.calls:
        return
    import json
    from pathlib import Path
    path = Path(session.config.rootpath) / ".local" / "iam-report.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**LOG.report(), "whole_run": _whole_run(session)}, indent=1))
    if _iam_problems(session) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    from batchgate_local.iam import LOG
    if not LOG.calls:
        return
    session = terminalreporter.config._batchgate_session if hasattr(terminalreporter.config, "_batchgate_session") \
        else None
    functions = {key[0] for key in LOG.used}
    terminalreporter.write_line(
        f"local IAM: {LOG.calls} AWS calls of {len(functions)} functions checked against their roles, "
        f"{len(set(LOG.denied))} denied, {len(LOG.unused())} of {len(LOG.granted)} grants unused "
        f"(.local/iam-report.json)")
    for line in (_iam_problems(session) if session else [])[:60]:
        terminalreporter.write_line(f"  IAM problem: {line}")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    session.config._batchgate_session = session
