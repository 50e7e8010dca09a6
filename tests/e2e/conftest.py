"""End-to-end fixtures: local mode started once for this package, driven by the official openai SDK.

Package scope (tests/e2e/__init__.py makes this a package; without it pytest would keep the fixture to
the end of the session): LocalService changes process-wide state (moto's backends and config,
AWS_ENDPOINT_URL, BATCHGATE_* variables), and tearing it down when the e2e tests end keeps the other
suites, which use `mock_aws`, unaffected.
"""
from __future__ import annotations

import json
import socket

import openai
import pytest

from batchgate_local import LocalService
from batchgate_local.dev_upstream import start_dev_upstream

KEY_A, TENANT_A = "sk-e2e-tenant-a", "tenant-a"
KEY_B, TENANT_B = "sk-e2e-tenant-b", "tenant-b"
# Local mode may shorten the 24h window; every batch in these tests finishes well within it.
COMPLETION_WINDOW_SECONDS = 60
# Webhook retries in seconds instead of hours, and a per-attempt timeout long enough that a delivery on a
# loaded machine is not mistaken for a dead endpoint; an endpoint's breaker opens after 3 failed attempts in a
# row for 5 s, then 10 s (test_e2e_webhooks.py).
WEBHOOK_OVERRIDES = {"webhooks": {"retry_schedule_seconds": [1, 1], "timeout_seconds": 20, "breaker_failures": 3,
                                  "breaker_cooldown_seconds": 5, "breaker_max_cooldown_seconds": 10}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def upstream_server():
    """The built-in development model server (its `calls` and `cookies` record what it received)."""
    server, base_url = start_dev_upstream(host="127.0.0.1", port=0)
    server.base_url = base_url
    yield server
    server.shutdown()


@pytest.fixture(scope="package")
def upstream(upstream_server):
    """The development upstream's base URL, for tests that pass --upstream-url."""
    return upstream_server.base_url


@pytest.fixture(scope="package")
def local_service(upstream):
    # As `batchgate local` does: no metrics documents on stdout, where in-process CLI tests read their
    # own output while the service's threads deliver webhooks and run chunks.
    env = pytest.MonkeyPatch()
    env.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        with LocalService(port=free_port(), api_keys={KEY_A: TENANT_A, KEY_B: TENANT_B}, upstream_url=upstream,
                          completion_window_seconds=COMPLETION_WINDOW_SECONDS,
                          overrides=WEBHOOK_OVERRIDES) as service:
            yield service
    finally:
        env.undo()


def _client(service: LocalService, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.base_url, api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="package")
def client_a(local_service) -> openai.OpenAI:
    return _client(local_service, KEY_A)


@pytest.fixture(scope="package")
def client_b(local_service) -> openai.OpenAI:
    return _client(local_service, KEY_B)


@pytest.fixture(scope="package")
def bad_client(local_service) -> openai.OpenAI:
    return _client(local_service, "sk-not-a-key")


@pytest.fixture
def batch_lines():
    """JSONL batch input of n chat-completions lines: batch_lines(n, model=..., prefix=...)."""
    return make_batch_lines


def make_batch_lines(n: int, model: str = "dev-model", prefix: str = "req") -> bytes:
    return b"".join(json.dumps({
        "custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"hello {i}"}]},
    }).encode() + b"\n" for i in range(n))


REPORT: list[str] = []   # lines a test wants in the terminal summary (shown without -s)


def pytest_terminal_summary(terminalreporter):
    for line in REPORT:
        terminalreporter.write_line(line)
