"""Regenerate docs/console-list.png and docs/console-batch.png: local mode with a few batches in every
state (completed, failed validation, cancelled, running), the console in headless Chromium.

    .venv/bin/python -m bench.console_screenshots
"""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import openai

from batchgate_local import LocalService
from batchgate_local.chromium import chromium, missing_reason
from batchgate_local.dev_upstream import start_dev_upstream

DOCS = Path(__file__).resolve().parents[1] / "docs"
KEY = "sk-console-demo"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def _lines(n: int, prefix: str, content: str = "") -> bytes:
    return b"".join(json.dumps({"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "dev-model", "messages": [
                                    {"role": "user", "content": f"{content} question {i}"}]}}).encode() + b"\n"
                    for i in range(n))


def _start(client: openai.OpenAI, name: str, data: bytes) -> str:
    file = client.files.create(file=(name, io.BytesIO(data)), purpose="batch")
    return client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h",
                                 metadata={"description": name}).id


def _wait(client: openai.OpenAI, batch_id: str, statuses: set[str]) -> None:
    deadline = time.monotonic() + 120
    while client.batches.retrieve(batch_id).status not in statuses:
        if time.monotonic() > deadline:
            raise SystemExit(f"{batch_id} never reached {statuses}")
        time.sleep(0.2)


def main() -> int:
    reason = missing_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    upstream, upstream_url = start_dev_upstream(host="127.0.0.1", port=0)
    try:
        # Chunks of 50 lines: counts grow chunk by chunk, so the running batch shows partial progress.
        with LocalService(api_keys={KEY: "demo"}, upstream_url=upstream_url,
                          overrides={"chunk_max_lines": 50}) as service:
            client = openai.OpenAI(base_url=service.base_url, api_key=KEY, max_retries=0)
            done = _start(client, "support-tickets.jsonl", _lines(118, "ticket", "__sleep_ms:50__")
                          + _lines(2, "ticket-bad", "__fail_400__"))
            _wait(client, done, TERMINAL)
            bad = _start(client, "typo.jsonl", _lines(3, "typo") + b"{not json\n" + _lines(1, "typo"))
            _wait(client, bad, TERMINAL)
            cancelled = _start(client, "old-prompts.jsonl", _lines(200, "old", "__sleep_ms:2000__"))
            _wait(client, cancelled, {"in_progress"})
            client.batches.cancel(cancelled)
            _wait(client, cancelled, TERMINAL)
            running = _start(client, "nightly-eval.jsonl", _lines(400, "eval", "__sleep_ms:1500__"))
            with chromium(viewport={"width": 1200, "height": 760}, device_scale_factor=1) as context:
                page = context.new_page()
                page.goto(service.base_url.removesuffix("/v1") + "/console/")
                page.fill("#api-key", KEY)
                page.click("#connect")
                row = page.locator(f"#batches tr[data-id={running}]")
                row.wait_for()
                # A few lines done: the bar of the running batch shows real progress.
                page.wait_for_function(
                    "id => Number(document.querySelector(`tr[data-id=${id}] .progress`).dataset.done) >= 100",
                    arg=running, timeout=120_000)
                page.screenshot(path=str(DOCS / "console-list.png"))
                page.goto(page.url.split("#")[0] + f"#/batches/{done}")
                page.locator("#batch-status [data-status=completed]").wait_for()
                page.screenshot(path=str(DOCS / "console-batch.png"), full_page=True)
            if client.batches.retrieve(running).status not in TERMINAL:
                client.batches.cancel(running)
    finally:
        upstream.shutdown()
    print(f"wrote {DOCS / 'console-list.png'} and {DOCS / 'console-batch.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
