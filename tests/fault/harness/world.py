"""The harness's world: the service's timing and overrides, and what a run needs of the running service."""
from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
import openai
from boto3.dynamodb.conditions import Key

from batchgate import settings as bg_settings
from batchgate.domain import worker
from batchgate.handlers import engine_deps

from .crash import CrashInjector
from .plan import RunSpec
from .transitions import TransitionLog

# Timing of the harness's world. The in-process runtime does not kill a worker at its timeout, so the
# lease margin must cover a late flush (S3 + DynamoDB with injected retries); local mode's poller does
# treat a worker that outlived its timeout as timed out, as Lambda would, and acks nothing of its run
# (its message may be back with another worker by then). A crashed chunk's message that comes back
# while its lease is live finds it "busy" and re-sends itself delayed to the lease's end.
WORKER_TIMEOUT_SECONDS = 6
LEASE_MARGIN_SECONDS = 3.0
QUEUE_VISIBILITY_SECONDS = 11
UPSTREAM_TIMEOUT_SECONDS = 0.8
SERVICE_OVERRIDES = {
    "chunk_max_lines": 10,
    "worker_max_concurrency": 4,
    "completion_window_seconds": 600,
    # Few attempts with a short timeout, so permanently failing or hanging lines end as error lines
    # within one short worker run instead of being deferred forever.
    "upstreams": {"upstreams": {"default": {"max_attempts": 3, "timeout_seconds": UPSTREAM_TIMEOUT_SECONDS,
                                            "connect_timeout_seconds": 2.0}}},
}
# Small byte bounds too, so commits by size and lanes waiting for room (a run holds a few answers of
# ~600 bytes at most) happen under the faults as well.
WORKER_LIMITS = worker.WorkerLimits(status_poll_seconds=1.0, stop_reserve_seconds=90.0,
                                    cancel_reserve_seconds=30.0, flush_seconds=1.0,
                                    lease_margin_seconds=LEASE_MARGIN_SECONDS, flush_bytes=1500,
                                    held_bytes_max=3000)


@dataclass
class World:
    """What a run needs of the running service (one LocalService per test session). Runs alternate
    between two tenants."""
    base_url: str
    tenants: list[tuple[str, str]]   # (api key, tenant)
    upstream: Any                     # the dev upstream (its `cookies` lists the Cookie headers it got)
    table: str
    queue_url: str
    dlq_url: str
    crashes: CrashInjector
    transitions: TransitionLog
    timed_out: Any = lambda: 0        # () -> invocations that outlived their timeout so far
    window_lock: threading.Lock = field(default_factory=threading.Lock)

    def tenant_of(self, spec: RunSpec | None) -> tuple[str, str]:
        return self.tenants[spec.seed % len(self.tenants) if spec else 0]

    def sdk(self, spec: RunSpec | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.tenant_of(spec)[0], max_retries=3, timeout=60)

    def create_batch(self, client: openai.OpenAI, file_id: str, window_seconds: int | None):
        """Create, with this run's completion window: only batch creation reads the window, from the
        functions' environment, so it is swapped for the create call alone."""
        if window_seconds is None:
            with self.window_lock:
                return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
        name = "BATCHGATE_COMPLETION_WINDOW_SECONDS"
        with self.window_lock:
            saved = os.environ.get(name)
            os.environ[name] = str(window_seconds)
            bg_settings.reset_settings()
            try:
                return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
            finally:
                if saved is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = saved
                bg_settings.reset_settings()

    def chunks(self, batch_id: str) -> list[dict]:
        table = boto3.resource("dynamodb").Table(self.table)
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(f"B#{batch_id}"), "ConsistentRead": True}
        items: list[dict] = []
        while True:
            resp = table.query(**kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def replace_worker_timeout(lambdas, seconds: int) -> None:
    """The worker function's Lambda timeout, as the in-process runtime reports it to the handler."""
    for spec in lambdas.specs:
        if spec.handler == "batchgate.handlers.chunk_worker.handler":
            lambdas.register(dataclasses.replace(spec, timeout_seconds=seconds))


def install_worker_limits(mp) -> None:
    """The harness's worker limits instead of the settings' (pytest MonkeyPatch `mp` undoes it)."""
    mp.setattr(engine_deps, "worker_limits", lambda: WORKER_LIMITS)
