"""`batchgate run` without a service: endpoint inference, the local input check, argument parsing, and the
`batches inspect` hand-off."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import types

import pytest

from batchgate_cli import batches, progress, run
from batchgate_cli.client import UsageError
from batchgate_cli.main import main as cli


def _line(cid="a", url="/v1/chat/completions", **kw) -> bytes:
    return json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": {"model": "m"}, **kw}).encode() + b"\n"


# -- endpoint inference ------------------------------------------------------------------------------------

def test_endpoint_is_the_one_url_of_the_lines():
    assert run.infer_endpoint({"/v1/embeddings": 1}) == "/v1/embeddings"
    assert run.infer_endpoint({"/v1/responses": 3}) == "/v1/responses"


def test_given_endpoint_wins_when_the_lines_agree():
    assert run.infer_endpoint({"/v1/completions": 1}, "/v1/completions") == "/v1/completions"


@pytest.mark.parametrize("urls, given, words", [
    ({"/v1/chat/completions": 1, "/v1/embeddings": 4}, None, "several urls: '/v1/chat/completions' (first on line 1)"),
    ({}, None, "no line has a url"),
    ({"/v1/audio/speech": 2}, None, "line 2: url '/v1/audio/speech' is not a batch endpoint"),
    ({"v1/embeddings": 1}, None, "line 1: url 'v1/embeddings' is not a batch endpoint"),
    ({"/v1/chat/completions": 1, "/v1/embeddings": 3}, "/v1/chat/completions", "line 3: url '/v1/embeddings' differs"),
])
def test_endpoint_inference_refuses_what_a_batch_cannot_be(urls, given, words):
    with pytest.raises(UsageError) as caught:
        run.infer_endpoint(urls, given)
    assert words in str(caught.value)


# -- the local input check ---------------------------------------------------------------------------------

def test_check_input_accepts_a_valid_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(_line("a") + _line("b"))
    check = run.check_input(path)
    assert (check.lines, check.custom_ids, check.urls, check.problems) == \
        (2, ["a", "b"], {"/v1/chat/completions": 1}, [])


def test_check_input_names_every_problem_with_its_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(_line("a") + b"{nope\n" + _line("a") + b"\n" + b"[]\n" + _line("c", method="GET")
                     + json.dumps({"custom_id": "d", "method": "POST", "url": "/v1/embeddings"}).encode() + b"\n")
    problems = run.check_input(path).problems
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "duplicate custom_id 'a'" in problems[1]
    assert "body must be a JSON object" in problems[5]


def test_check_input_caps_the_list(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"{\n" * 30)
    problems = run.check_input(path, limit=5).problems
    assert len(problems) == 6 and problems[-1] == "... and 25 more"


def test_an_empty_file_is_a_problem(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"")
    assert run.check_input(path).problems == ["the file is empty"]


# -- arguments ---------------------------------------------------------------------------------------------

def test_arguments_parse():
    args = run.parser().parse_args(["in.jsonl", "-o", "out.jsonl", "--errors", "err.jsonl", "--endpoint",
                                    "/v1/embeddings", "--metadata", "a=1", "--metadata", "b=x=y", "--json",
                                    "--part-size", "1MiB", "--direct-limit", "1000"])
    assert (str(args.input), str(args.output), str(args.errors), args.endpoint) == \
        ("in.jsonl", "out.jsonl", "err.jsonl", "/v1/embeddings")
    assert args.metadata == [("a", "1"), ("b", "x=y")]
    assert (args.json, args.quiet, args.window, args.part_size, args.direct_limit) == \
        (True, False, "24h", 1024 * 1024, 1000)


@pytest.mark.parametrize("argv", [["--metadata", "novalue", "x.jsonl"], ["--part-size", "0", "x.jsonl"],
                                  ["--json", "--quiet", "x.jsonl"], ["--endpoint", "/v1/nope", "x.jsonl"]])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        run.parser().parse_args(argv)
    assert caught.value.code == 2


@pytest.mark.parametrize("argv", [[], ["x.jsonl", "--batch", "batch_1"]])
def test_an_input_or_a_batch_exactly(argv, capsys):
    assert cli(["run", *argv]) == 2
    assert "give an input file, or --batch ID" in capsys.readouterr().err


def test_no_api_key_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_line())
    assert cli(["run", str(path), "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "no API key" in capsys.readouterr().err


def test_poll_max_is_short_for_a_loopback_service(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert run._loopback("http://127.0.0.1:8000/v1") and run._loopback("http://localhost/v1")
    assert not run._loopback("https://api.openai.com/v1") and not run._loopback(None)


def test_default_result_paths_follow_the_input_or_the_batch():
    args = run.parser().parse_args(["data/requests.jsonl"])
    assert str(run._default_path(args, "results")) == "data/requests.results.jsonl"
    args = run.parser().parse_args(["--batch", "batch_1"])
    assert str(run._default_path(args, "errors")) == "batch_1.errors.jsonl"


def test_rate_and_eta(monkeypatch):
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    rate = progress.Rate()
    assert rate.update(0, 1000) == (None, None)
    assert rate.update(200, 1000) == (20.0, 40.0)


# -- batches inspect is another module's ---------------------------------------------------------------------

def test_batches_inspect_is_forwarded(monkeypatch):
    seen = []
    fake = types.ModuleType("batchgate_cli.inspect")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "batchgate_cli.inspect", fake)
    assert cli(["batches", "inspect", "batch_1", "--json"]) == 3
    assert seen == [["batch_1", "--json"]]


def test_batches_inspect_missing_is_a_clear_error(monkeypatch, capsys):
    real = importlib.import_module

    def fake_import(name, *a):
        if name == "batchgate_cli.inspect":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a)

    monkeypatch.setattr(batches.importlib, "import_module", fake_import)
    assert cli(["batches", "inspect", "batch_1"]) == 2
    assert "batchgate_cli.inspect is missing" in capsys.readouterr().err


def test_batches_needs_an_action():
    with pytest.raises(SystemExit) as caught:
        cli(["batches"])
    assert caught.value.code == 2
    assert isinstance(batches.parser(), argparse.ArgumentParser)


def test_a_ctrl_c_while_the_cancel_is_being_reported_detaches_with_the_reattach_hint(monkeypatch, capsys):
    # Given a batch that stays in progress, and a user who answers "c" to the first Ctrl-C
    batch = types.SimpleNamespace(id="batch_abc", status="in_progress", request_counts=None)
    cancelled = []
    client = types.SimpleNamespace(batches=types.SimpleNamespace(
        retrieve=lambda batch_id: batch, cancel=lambda batch_id: cancelled.append(batch_id)))
    monkeypatch.setattr(run.common, "make_client", lambda args: client)
    monkeypatch.setattr(run, "_ask", lambda *a: "cancel")

    def ctrl_c(seconds):
        raise KeyboardInterrupt  # the first Ctrl-C lands while the command waits between polls

    monkeypatch.setattr(run.time, "sleep", ctrl_c)

    def note_interrupted(self, text):
        raise KeyboardInterrupt  # the second lands while "cancelling ..." is being printed

    monkeypatch.setattr(progress.LinesReporter, "note", note_interrupted)

    # When the command follows it
    code = run.main(["--batch", "batch_abc", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k"])

    # Then the cancel was sent, and the command detached with the hint to reattach (exit 130)
    assert (code, cancelled) == (130, ["batch_abc"])
    assert "reattach with: batchgate run --batch batch_abc" in capsys.readouterr().err
