"""The batch console (/console/) in Chromium against local mode: enter a key, upload a file and start a
batch, watch it complete, read a failed validation's errors, cancel a running batch, download results.
Every wait is on page state (Playwright's expect), never a fixed sleep."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import DIRECT_BYTES, KEY, KEY_B, REDIRECT_BYTES, TIMEOUT_MS, chat_line, console_url, jsonl

pytestmark = pytest.mark.e2e


def connect(page: Page, service, key: str = KEY) -> None:
    page.goto(console_url(service))  # no slash: the page redirects to /console/
    expect(page).to_have_url(re.compile(r"/console/$"))
    page.fill("#api-key", key)
    page.click("#connect")
    expect(page.locator("#list-view")).to_be_visible()


def start_batch(page: Page, name: str, data: bytes) -> str:
    """Upload `data` from the list page and start a batch; the page moves to the batch's own page."""
    page.set_input_files("#input-file", files=[{"name": name, "mimeType": "application/jsonl", "buffer": data}])
    page.click("#create")
    expect(page).to_have_url(re.compile(r"#/batches/batch_"))
    return page.url.rsplit("/", 1)[1]


def download(page: Page, kind: str, tmp_path: Path) -> bytes:
    with page.expect_download() as info:
        page.click(f"[data-download={kind}]")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path.read_bytes()


def test_create_watch_it_complete_and_download_the_output(page, console_service, tmp_path):
    connect(page, console_service)
    batch_id = start_batch(page, "hello.jsonl", jsonl(chat_line(i, f"__sleep_ms:200__ hi {i}") for i in range(40)))

    expect(page.locator("#batch-status [data-status]")).to_have_attribute("data-status", "completed",
                                                                          timeout=TIMEOUT_MS)
    bar = page.locator("#batch-progress progress")
    expect(bar).to_have_attribute("max", "40")
    expect(page.locator("#batch-progress .progress")).to_have_attribute("data-done", "40")
    expect(page.locator("#batch-progress .pct")).to_have_text("100%")
    events = page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.event)")
    assert events == ["created_at", "in_progress_at", "finalizing_at", "completed_at"]
    assert int(page.locator("#usage dd").last.inner_text().replace(",", "")) > 0  # total tokens
    expect(page.locator("#cancel")).to_be_hidden()

    output = [json.loads(line) for line in download(page, "output", tmp_path).splitlines()]
    assert sorted(r["custom_id"] for r in output) == sorted(f"req-{i}" for i in range(40))
    assert all(r["response"]["status_code"] == 200 for r in output)

    # The list shows it, newest first, with its status, a full bar and its counts.
    page.click("text=← All batches")
    row = page.locator(f"#batches tr[data-id={batch_id}]")
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator(".pct")).to_have_text("100%")
    expect(row.locator(".counts")).to_contain_text("40 total")
    expect(page.locator("#batches tbody tr").first).to_have_attribute("data-id", batch_id)


def test_a_failed_validation_shows_its_errors_with_line_numbers(page, console_service):
    connect(page, console_service)
    start_batch(page, "bad.jsonl", jsonl([chat_line(1, prefix="bad"), b"{not json", chat_line(1, prefix="bad"),
                                          {**chat_line(4, prefix="bad"), "url": "/v1/nowhere"}]))

    expect(page.locator("#batch-status [data-status]")).to_have_attribute("data-status", "failed",
                                                                          timeout=TIMEOUT_MS)
    rows = page.locator("#errors-table tbody tr")
    expect(rows).to_have_count(3)
    assert rows.locator("td.line").all_inner_texts() == ["2", "3", "4"]
    assert rows.nth(0).inner_text().count("invalid_json_line") == 1
    assert "duplicate_custom_id" in rows.nth(1).inner_text()
    events = page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.event)")
    assert events == ["created_at", "failed_at"]


def test_cancel_a_running_batch(page, console_service, tmp_path):
    connect(page, console_service)
    # 300 lines of 2 s each, 32 at a time: ~20 s of work, far longer than it takes to press Cancel.
    data = jsonl(chat_line(i, f"__sleep_ms:2000__ slow {i}", prefix="can") for i in range(300))
    assert len(data) > DIRECT_BYTES  # too big for POST /v1/files here: the page sends it in upload parts
    start_batch(page, "slow.jsonl", data)
    status = page.locator("#batch-status [data-status]")
    expect(status).to_have_attribute("data-status", "in_progress", timeout=TIMEOUT_MS)
    page.click("#cancel")
    expect(status).to_have_attribute("data-status", re.compile("cancelling|cancelled"))
    expect(status).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
    expect(page.locator("#cancel")).to_be_hidden()
    events = page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.event)")
    assert {"cancelling_at", "cancelled_at"} <= set(events)
    errors = [json.loads(line) for line in download(page, "error", tmp_path).splitlines()]
    assert errors and all(r["error"]["code"] == "batch_cancelled" for r in errors)


def test_a_large_output_downloads_from_its_presigned_url(page, console_service, tmp_path):
    connect(page, console_service)
    n = 60  # each output line is several hundred bytes: the output file crosses REDIRECT_BYTES
    start_batch(page, "big.jsonl", jsonl(chat_line(i, "x" * 200, prefix="big") for i in range(n)))
    expect(page.locator("#batch-status [data-status]")).to_have_attribute("data-status", "completed",
                                                                          timeout=TIMEOUT_MS)
    # The presigned URL opens in a new tab, which S3's attachment answer turns into a download (and
    # closes); Chromium reports the download on the page that opened the tab.
    with page.expect_download() as info:
        page.click("[data-download=output]")
    got = info.value
    assert "Signature=" in got.url and got.suggested_filename.endswith(".jsonl")
    got.save_as(tmp_path / "big.jsonl")
    body = (tmp_path / "big.jsonl").read_bytes()
    assert len(body) > REDIRECT_BYTES
    assert sorted(json.loads(line)["custom_id"] for line in body.splitlines()) == sorted(f"big-{i}" for i in range(n))


def test_another_key_sees_none_of_these_batches(page, console_service):
    connect(page, console_service, KEY_B)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#batches tbody tr")).to_have_count(0)
