"""`batchgate local` keeps its data in a state folder (issue 12): files and batches survive a restart,
a batch stopped mid-run (Ctrl-C, and separately a kill) resumes and ends with every line exactly once,
and --ephemeral keeps nothing. Each service runs as a subprocess, as `make local` does.

The upstream is the development server with a gate: lines carrying `__gate__` wait until the test
opens it, so "mid-run" is an event (the gate was hit and the other chunks are counted), not a sleep.
"""
from __future__ import annotations

import io
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from batchgate_local.dev_upstream import DevUpstreamServer, _Handler

pytestmark = pytest.mark.e2e

READY = re.compile(r"^ready: (http://127\.0\.0\.1:\d+/v1)$")
KEY = "sk-durable-test-key"
FAST, GATED = 1020, 1020   # two even chunks, one a lane: one fast, one held at the gate
START_TIMEOUT = 180        # a cold CDK synth on a loaded machine
WAIT = 120


class _GatedHandler(_Handler):
    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if b"__gate__" in raw:
            self.server.gate_hit.set()   # type: ignore[attr-defined]
            self.server.gate.wait(WAIT)  # type: ignore[attr-defined]
        self.rfile = io.BytesIO(raw)
        super().do_POST()


@pytest.fixture
def gated_upstream():
    server = DevUpstreamServer(("127.0.0.1", 0))
    server.RequestHandlerClass = _GatedHandler
    server.gate, server.gate_hit = threading.Event(), threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield server
    server.gate.set()
    server.shutdown()


class Local:
    def __init__(self, proc: subprocess.Popen, base_url: str, stderr: Path):
        self.proc, self.base_url, self.stderr_path = proc, base_url, stderr

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=2, timeout=60)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "MOTO_PORT")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchgate_cli.main", "local", "--port", "0", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=_env())


@contextmanager
def local(tmp_path: Path, upstream: str, *args: str, key: bool = True, name: str = "run") -> Iterator[Local]:
    log = tmp_path / f"{name}.stderr"
    proc = _run([*(["--api-key", f"{KEY}=durable"] if key else []), "--upstream-url", upstream, *args],
                tmp_path, log)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(START_TIMEOUT), f"no ready line; stderr:\n{log.read_text()}"
        line = proc.stdout.readline().rstrip("\n")
        match = READY.match(line)
        assert match, f"unexpected stdout {line!r}; stderr:\n{log.read_text()}"
        yield Local(proc, match.group(1), log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _lines() -> bytes:
    out = []
    for i in range(FAST + GATED):
        content = f"line {i}" + (" __gate__" if i >= FAST else "")
        out.append(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "dev-model", "messages": [{"role": "user", "content": content}]}}))
    return ("\n".join(out) + "\n").encode()


def _wait(client: openai.OpenAI, batch_id: str, done) -> openai.types.Batch:
    deadline = time.monotonic() + WAIT
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        assert time.monotonic() < deadline, f"batch stuck: {batch}"
        time.sleep(0.2)   # a polling interval, not a guess: the loop waits for the status


def _start_mid_run(svc: Local, upstream) -> tuple[str, str, str]:
    """A finished small batch, then a big one held mid-run: (file id, small batch id, big batch id)."""
    c = svc.client()
    small_in = c.files.create(file=("small.jsonl", _lines().split(b"\n", 3)[0] + b"\n"), purpose="batch")
    small = c.batches.create(input_file_id=small_in.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert _wait(c, small.id, lambda b: b.status in ("completed", "failed")).status == "completed"
    big_in = c.files.create(file=("big.jsonl", _lines()), purpose="batch")
    big = c.batches.create(input_file_id=big_in.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert upstream.gate_hit.wait(WAIT), "the gated chunk never reached the upstream"
    mid = _wait(c, big.id, lambda b: b.request_counts and b.request_counts.completed >= FAST)
    assert mid.status == "in_progress"
    return big_in.id, small.id, big.id


def _exactly_once(client: openai.OpenAI, batch_id: str) -> None:
    batch = _wait(client, batch_id, lambda b: b.status in ("completed", "failed", "expired", "cancelled"))
    assert batch.status == "completed", batch
    seen: Counter[str] = Counter()
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            for line in client.files.content(file_id).text.splitlines():
                seen[json.loads(line)["custom_id"]] += 1
    assert seen == Counter(f"req-{i}" for i in range(FAST + GATED))
    assert batch.request_counts.total == FAST + GATED


def _after_restart(svc: Local, file_id: str, small_id: str, big_id: str) -> None:
    c = svc.client()
    assert file_id in {f.id for f in c.files.list().data}
    small = c.batches.retrieve(small_id)
    assert small.status == "completed"
    assert json.loads(c.files.content(small.output_file_id).text)["custom_id"] == "req-0"
    _exactly_once(c, big_id)
    assert {small_id, big_id} <= {b.id for b in c.batches.list().data}


def test_sigint_mid_batch_resumes_and_keeps_everything(tmp_path, gated_upstream):
    """The default folder (.batchgate/ in the working directory); a second service on it is refused."""
    with local(tmp_path, gated_upstream.base_url, name="first") as svc:
        ids = _start_mid_run(svc, gated_upstream)
        svc.proc.send_signal(signal.SIGINT)
        assert svc.proc.wait(timeout=60) == 0, svc.stderr
    assert (tmp_path / ".batchgate" / "state.json").is_file()
    gated_upstream.gate.set()
    with local(tmp_path, gated_upstream.base_url, name="second") as svc:
        assert "1 unfinished batch(es) resumed" in svc.stderr
        second = _run(["--api-key", f"{KEY}=durable", "--upstream-url", gated_upstream.base_url], tmp_path,
                      tmp_path / "third.stderr")
        assert second.wait(timeout=60) == 1
        assert "in use by another batchgate local" in (tmp_path / "third.stderr").read_text()
        _after_restart(svc, *ids)


def test_sigkill_mid_batch_resumes_and_the_dev_key_still_works(tmp_path, gated_upstream):
    state = tmp_path / "state"
    with local(tmp_path, gated_upstream.base_url, "--state-dir", str(state), key=False, name="first") as svc:
        found = re.search(r"development API key \(tenant 'dev'\): (\S+)", svc.stderr)
        assert found, svc.stderr
        dev_key = found.group(1)
        c = svc.client(dev_key)
        f = c.files.create(file=("in.jsonl", _lines()), purpose="batch")
        big = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert gated_upstream.gate_hit.wait(WAIT)
        _wait(c, big.id, lambda b: b.request_counts and b.request_counts.completed >= FAST)
        svc.proc.kill()
        svc.proc.wait()
    gated_upstream.gate.set()
    with local(tmp_path, gated_upstream.base_url, "--state-dir", str(state), key=False, name="second") as svc:
        assert "the key printed on the first start still works" in svc.stderr
        assert dev_key not in svc.stderr
        c = svc.client(dev_key)
        assert f.id in {x.id for x in c.files.list().data}
        _exactly_once(c, big.id)


def test_ephemeral_keeps_nothing(tmp_path, gated_upstream):
    with local(tmp_path, gated_upstream.base_url, "--ephemeral", name="first") as svc:
        svc.client().files.create(file=("in.jsonl", b'{"a": 1}\n'), purpose="batch")
        svc.proc.send_signal(signal.SIGINT)
        assert svc.proc.wait(timeout=60) == 0
    assert not (tmp_path / ".batchgate").exists()
    with local(tmp_path, gated_upstream.base_url, "--ephemeral", name="second") as svc:
        assert svc.client().files.list().data == []


def test_a_folder_of_another_format_version_is_refused(tmp_path):
    state = tmp_path / "old"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"format": "batchgate-local-state", "version": 99}))
    proc = _run(["--state-dir", str(state)], tmp_path, tmp_path / "err")
    assert proc.wait(timeout=60) == 1
    assert "incompatible" in (tmp_path / "err").read_text()
    assert json.loads((state / "state.json").read_text())["version"] == 99   # untouched
