"""`python -m batchgate_cli.main local` as a user runs it: ready line, one SDK call, Ctrl-C, clean exit."""
from __future__ import annotations

import io
import os
import re
import selectors
import signal
import subprocess
import sys

import openai
import pytest
from support.sdk import wait_for_batch

from batchgate.domain import keys

from .conftest import make_batch_lines

pytestmark = pytest.mark.e2e

READY = re.compile(r"^ready: (http://127\.0\.0\.1:(\d+)/v1)$")


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise TimeoutError("no line on stdout")
    return proc.stdout.readline()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_local_ready_call_and_sigint(upstream):
    port = _free_port()
    key = "sk-cli-test-key"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in ("AWS_ENDPOINT_URL", "MOTO_PORT"):  # this process's local service must not leak in
        env.pop(k, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchgate_cli.main", "local", "--ephemeral", "--port", str(port),
         "--api-key", f"{key}=cli", "--upstream-url", upstream],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = _read_line(proc, timeout=120).rstrip("\n")
        match = READY.match(line)
        assert match, f"unexpected stdout line {line!r}"
        assert int(match.group(2)) == port
        client = openai.OpenAI(base_url=match.group(1), api_key=key, max_retries=0)
        assert client.files.list().data == []
        # A batch runs through every function (which emit metrics in Lambda: never on local stdout), with
        # more than 100 lines (Powertools prints a metric holding 100 values by itself)
        f = client.files.create(file=("a.jsonl", io.BytesIO(make_batch_lines(150)), "application/jsonl"),
                                purpose="batch")
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert wait_for_batch(client, batch.id).status == "completed"

        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)  # a hang guard only
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, proc.stderr.read()
    assert rest == ""  # exactly one line on stdout: no logs, no metrics


def test_cli_without_keys_prints_a_development_key(upstream):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "MOTO_PORT")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchgate_cli.main", "local", "--ephemeral", "--port", str(port),
         "--upstream-url", upstream],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = _read_line(proc, timeout=120)
        assert READY.match(line.rstrip("\n"))
        # The operations commands reach the running service's AWS with what it printed (before `ready:`)
        printed = []
        while not (printed and printed[-1].startswith("aws: ")):
            printed.append(proc.stderr.readline())
            assert printed[-1], printed
        endpoint = printed[-1].split()[1]
        ops_env = {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        usage = subprocess.run([sys.executable, "-m", "batchgate_cli.main", "usage", "--stack", "batchgate-local",
                                "--since", "2020-01-01", "--json"], env=ops_env, capture_output=True, text=True,
                               timeout=120)
        assert usage.returncode == 0, usage.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        stderr = "".join(printed) + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = re.search(r"development API key \(tenant 'dev'\): (\S+)", stderr)
    assert found, stderr
    assert found.group(1).startswith(keys.KEY_PREFIX)
