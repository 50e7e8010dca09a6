"""`batchgate run`, `batchgate batches` and `batchgate files` against local mode (the package's service).

Most calls run the command's main() in this process (the client talks HTTP to the service all the same);
the --json, console-script and Ctrl-C tests run it as a subprocess, as a user does.
"""
from __future__ import annotations

import io
import json
import os
import re
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.sdk import wait_for_batch

from batchgate_cli.main import main as cli

from .conftest import KEY_A, make_batch_lines

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(local_service, monkeypatch):
    """The environment the commands read their connection from (as the SDK does)."""
    monkeypatch.setenv("OPENAI_BASE_URL", local_service.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY_A)
    return {**os.environ, "OPENAI_BASE_URL": local_service.base_url, "OPENAI_API_KEY": KEY_A,
            "PYTHONUNBUFFERED": "1"}


def _out(capsys) -> str:
    """What a command printed on stdout, without the in-process service's own JSON logs and metrics."""
    return "".join(line for line in capsys.readouterr().out.splitlines(keepends=True)
                   if not line.startswith(('{"level":', '{"_aws":')))


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_bytes().splitlines() if line.strip()]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _slow_lines(n: int, prefix: str) -> bytes:
    """Lines the development upstream answers only after 30 s: the batch stays in progress meanwhile."""
    return b"".join(json.dumps({
        "custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "dev-model", "messages": [{"role": "user", "content": "__sleep_ms:30000__"}]},
    }).encode() + b"\n" for i in range(n))


def _spawn(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchgate_cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _json_event(proc: subprocess.Popen, wanted, timeout: float = 60) -> dict:
    """Read --json lines from the process until one satisfies `wanted` (an event decides, not a clock)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        if not sel.select(timeout):
            raise TimeoutError("no JSON line in time")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the process ended first: {proc.wait()} {proc.stderr.read()}")
        event = json.loads(line)
        if wanted(event):
            return event


# -- batchgate run -----------------------------------------------------------------------------------------

def test_run_small_file_to_completion(env, tmp_path, capsys):
    src = _write(tmp_path, "requests.jsonl", make_batch_lines(6, prefix="small"))

    code = cli(["run", str(src), "--metadata", "job=e2e"])

    out = _out(capsys)
    assert code == 0
    assert _ids(tmp_path / "requests.results.jsonl") == _ids(src)
    assert "completed" in out and "6/6 succeeded" in out
    assert not (tmp_path / "requests.errors.jsonl").exists()


def test_run_json_progress_lines_parse(env, tmp_path):
    src = _write(tmp_path, "in.jsonl", make_batch_lines(4, prefix="js"))
    out = tmp_path / "out.jsonl"

    proc = subprocess.run([sys.executable, "-m", "batchgate_cli.main", "run", str(src), "-o", str(out), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)

    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["upload", "uploaded", "created"]
    assert "progress" in kinds and kinds[-1] == "done"
    progress = [e for e in events if e["event"] == "progress"]
    assert all({"status", "completed", "failed", "total", "rate", "eta_seconds"} <= e.keys() for e in progress)
    done = events[-1]
    assert (done["status"], done["completed"], done["failed"], done["total"], done["exit_code"]) == \
        ("completed", 4, 0, 4, 0)
    assert done["files"] == {"output": str(out)}
    assert _ids(out) == _ids(src)


def test_run_with_a_failing_line_exits_1_and_writes_the_errors_file(env, tmp_path, capsys):
    lines = make_batch_lines(3, prefix="mix").replace(b"hello 1", b"hello 1 __fail_400__")
    src = _write(tmp_path, "mix.jsonl", lines)

    code = cli(["run", str(src), "-o", str(tmp_path / "ok.jsonl"), "--errors", str(tmp_path / "bad.jsonl")])

    assert code == 1
    assert "2/3 succeeded, 1 failed" in _out(capsys)
    assert sorted(_ids(tmp_path / "ok.jsonl") + _ids(tmp_path / "bad.jsonl")) == sorted(_ids(src))
    failed = [json.loads(line) for line in (tmp_path / "bad.jsonl").read_bytes().splitlines()]
    assert [(f["custom_id"], f["response"]["status_code"]) for f in failed] == [("mix-1", 400)]


def test_a_batch_failing_validation_prints_its_errors_and_exits_1(env, tmp_path, capsys):
    src = _write(tmp_path, "invalid.jsonl", make_batch_lines(2, prefix="inv") + b"{not json}\n")

    code = cli(["run", str(src), "--no-validate"])

    out = capsys.readouterr()
    assert code == 1
    assert " failed in " in out.out
    assert "line 3:" in out.err, out.err


def test_invalid_input_is_refused_before_upload_with_line_numbers(env, tmp_path, capsys, client_a):
    before = {f.id for f in client_a.files.list()}
    src = _write(tmp_path, "bad.jsonl", make_batch_lines(2, prefix="dup") * 2 + b"[1]\n")

    code = cli(["run", str(src)])

    err = capsys.readouterr().err
    assert code == 2
    assert "line 3: duplicate custom_id 'dup-0'" in err and "line 5: not a JSON object" in err
    assert {f.id for f in client_a.files.list()} == before  # nothing uploaded
    assert cli(["run", str(tmp_path / "missing.jsonl")]) == 2


def test_a_file_over_the_direct_limit_goes_through_uploads_in_parts(env, tmp_path, capsys, client_a):
    data = make_batch_lines(40, prefix="big")
    src = _write(tmp_path, "big.jsonl", data)

    code = cli(["run", str(src), "--json", "--direct-limit", "1KiB", "--part-size", "1000"])

    events = [json.loads(line) for line in _out(capsys).splitlines()]
    assert code == 0
    uploaded = next(e for e in events if e["event"] == "uploaded")
    assert uploaded["mode"] == "uploads" and uploaded["parts"] == -(-len(data) // 1000) > 3
    assert client_a.files.content(uploaded["file_id"]).read() == data  # the parts, in order
    assert _ids(tmp_path / "big.results.jsonl") == _ids(src)


def test_reattach_with_batch_id(env, tmp_path, capsys, client_a):
    data = make_batch_lines(3, prefix="re")
    file = client_a.files.create(file=("re.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")
    batch = client_a.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")

    code = cli(["run", "--batch", batch.id, "-o", str(tmp_path / "re.out.jsonl"), "--quiet"])

    assert code == 0
    assert _out(capsys) == ""  # --quiet: nothing but errors
    assert sorted(_ids(tmp_path / "re.out.jsonl")) == ["re-0", "re-1", "re-2"]
    assert cli(["batches", "watch", batch.id]) == 0  # follows without downloading: it has ended
    assert cli(["run", "--batch", "batch_doesnotexist"]) == 2
    assert cli(["run"]) == 2


def test_ctrl_c_in_a_terminal_asks_and_c_cancels(env, tmp_path, client_a, upstream_server, monkeypatch):
    """On a terminal: live progress; Ctrl-C shows the question, `c` cancels, a second Ctrl-C detaches (130).
    The command runs as a subprocess (fork+exec, never pty.fork in this many-threaded process) whose
    stdin, stdout and stderr are a pseudo-terminal; Ctrl-C is the SIGINT a terminal would send."""
    import pty

    from batchgate.handlers import wf_finalize
    detached, original = threading.Event(), wf_finalize.finalize_batch

    def held_finalize(*a, **kw):  # the batch stays `cancelling` until the second Ctrl-C has been sent
        detached.wait(60)
        return original(*a, **kw)

    monkeypatch.setattr(wf_finalize, "finalize_batch", held_finalize)
    src = _write(tmp_path, "tty.jsonl", _slow_lines(1, "tty"))
    calls = len(upstream_server.calls)
    fd, tty = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "batchgate_cli.main", "run", str(src)], env=env,
                            stdin=tty, stdout=tty, stderr=tty, start_new_session=True)
    os.close(tty)
    seen = bytearray()

    def pump(done) -> None:
        """Keep reading the terminal (a full one would block the child) until done(new output) is true."""
        start = len(seen)
        deadline = time.monotonic() + 120  # a hang guard only: the events below decide
        while not done(bytes(seen[start:])):
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    seen.extend(os.read(fd, 65536))
                except OSError:  # the terminal closed: the child ended
                    raise AssertionError(seen.decode(errors="replace")) from None

    try:
        pump(lambda out: b"in_progress" in out)
        pump(lambda out: len(upstream_server.calls) > calls)  # the line is with the model now
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        pump(lambda out: b"[r]esume watching?" in out)
        os.write(fd, b"c\n")
        pump(lambda out: b"(Ctrl-C again to detach)" in out)
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C while cancelling detaches
        detached.set()
        pump(lambda out: b"reattach with" in out)
        code = proc.wait(timeout=60)
    finally:
        detached.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(fd)
    assert code == 130
    batch_id = re.search(rb"cancelling (batch_[0-9a-f]+)", seen).group(1).decode()
    assert client_a.batches.retrieve(batch_id).status in ("cancelling", "cancelled")


def test_ctrl_c_detach_then_reattach_and_cancel(env, tmp_path, client_a, capsys):
    """SIGINT with "d" answered on stdin detaches (130, batch still running); with no stdin it detaches too;
    `batches cancel` then cancels it."""
    src = _write(tmp_path, "slow.jsonl", _slow_lines(1, "slow"))
    proc = _spawn(["run", str(src), "--json"], env, stdin=subprocess.PIPE)
    try:
        proc.stdin.write("d\n")
        proc.stdin.close()
        created = _json_event(proc, lambda e: e["event"] == "created")
        _json_event(proc, lambda e: e["event"] == "progress")  # following it now
        proc.send_signal(signal.SIGINT)
        detached = _json_event(proc, lambda e: e["event"] in ("detached", "done"))
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    batch_id = created["batch_id"]
    assert detached == {"event": "detached", "batch_id": batch_id, "exit_code": 130,
                        "reattach": f"batchgate run --batch {batch_id}"}
    assert client_a.batches.retrieve(batch_id).status in ("validating", "in_progress")

    again = _spawn(["run", "--batch", batch_id], env, stdin=subprocess.DEVNULL)  # non-TTY, no stdin
    try:
        line = ""
        while batch_id not in line:  # a status line says it is following the batch
            line = again.stderr.readline()
            assert line, again.wait()
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=30) == 130
        rest = again.stderr.read()
    finally:
        if again.poll() is None:
            again.kill()
    assert f"reattach with: batchgate run --batch {batch_id}" in rest
    assert client_a.batches.retrieve(batch_id).status in ("validating", "in_progress")

    assert cli(["batches", "cancel", batch_id]) == 0
    assert _out(capsys).split()[:2] == [batch_id, "cancelling"]
    assert cli(["batches", "show", batch_id]) == 0
    assert re.search(r"status\s+cancel", _out(capsys))


# -- batchgate batches / files ------------------------------------------------------------------------------

def test_batches_list_show_cancel(env, capsys, client_a):
    data = make_batch_lines(2, prefix="ls")
    file = client_a.files.create(file=("ls.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")
    batch = client_a.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h",
                                    metadata={"owner": "cli-test"})

    assert cli(["batches", "list", "--limit", "5"]) == 0
    table = _out(capsys)
    assert table.splitlines()[0].split()[:3] == ["ID", "STATUS", "ENDPOINT"]
    assert batch.id in table and "owner=cli-test" in table
    assert cli(["batches", "list", "--json", "--limit", "1"]) == 0
    assert json.loads(_out(capsys))["id"] == batch.id

    assert cli(["batches", "show", batch.id]) == 0
    shown = _out(capsys)
    assert batch.id in shown and file.id in shown and "/v1/chat/completions" in shown

    assert wait_for_batch(client_a, batch.id).status == "completed"
    assert cli(["batches", "cancel", batch.id]) == 1  # (the detach tests cancel a running one)
    assert "Cannot cancel a batch with status 'completed'" in capsys.readouterr().err
    assert cli(["batches", "show", "batch_nope"]) == 2


def test_files_list_upload_download_delete(env, tmp_path, capsys, client_a):
    data = make_batch_lines(3, prefix="f")
    src = _write(tmp_path, "upme.jsonl", data)

    assert cli(["files", "upload", str(src)]) == 0
    file_id = _out(capsys).strip()
    assert client_a.files.retrieve(file_id).bytes == len(data)
    assert cli(["files", "upload", str(src), "--direct-limit", "100", "--part-size", "200", "--json"]) == 0
    parted = json.loads(_out(capsys))
    assert client_a.files.content(parted["id"]).read() == data

    assert cli(["files", "list", "--purpose", "batch"]) == 0
    table = _out(capsys)
    assert file_id in table and "upme.jsonl" in table

    assert cli(["files", "download", file_id, "-o", str(tmp_path / "back.jsonl")]) == 0
    assert (tmp_path / "back.jsonl").read_bytes() == data
    capsys.readouterr()
    assert cli(["files", "download", file_id]) == 0
    assert _out(capsys).encode() == data

    assert cli(["files", "delete", file_id, parted["id"]]) == 0
    assert _out(capsys).split() == ["deleted", file_id, "deleted", parted["id"]]
    assert cli(["files", "delete", file_id]) == 1
    assert cli(["files", "list", "--json"]) == 0
    assert file_id not in _out(capsys)


def test_files_upload_falls_back_to_uploads_when_the_service_answers_413(env, tmp_path, capsys, client_a):
    """A client told a larger direct limit than the service's (4 MiB) still gets the file stored."""
    big = b"".join(json.dumps({"custom_id": f"l-{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "m", "messages": [{"role": "user", "content": "x" * 1_100_000}]}}
                              ).encode() + b"\n" for i in range(4))
    src = _write(tmp_path, "large.jsonl", big)

    assert cli(["files", "upload", str(src), "--direct-limit", "64MiB"]) == 0

    captured = capsys.readouterr()
    file_id = captured.out.strip().splitlines()[-1]
    assert client_a.files.retrieve(file_id).bytes == len(big) > 4 * 1024 * 1024
    assert "through the Uploads API" in captured.err
    client_a.files.delete(file_id)
