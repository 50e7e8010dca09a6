"""Headless Chromium for the console's browser test and screenshots: Debian's `chromium` package at
/usr/bin/chromium (`make setup` installs it), driven by Playwright (whose driver ships in its wheel;
no browser download). The flags keep it quiet on a closed network: without the background-networking
ones Chromium keeps trying to reach Google's services."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = os.environ.get("BATCHGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
]


def missing_reason() -> str | None:
    """Why the browser cannot run here (None: it can)."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found: `make setup` installs Debian's chromium (apt-get install -y chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing: `make setup` installs the dev extra"
    return None


@contextmanager
def chromium(**context_options: Any) -> Iterator[Any]:
    """A browser context (Playwright's BrowserContext) in a fresh, throw-away profile."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="batchgate-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS, accept_downloads=True,
                **context_options)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
